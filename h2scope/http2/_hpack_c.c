/* HPACK in C: the walk of the Huffman machine (RFC 7541 Appendix B), and a decoding
 * dynamic table (RFC 7541 §2.3, §4, §6) that decodes whole header blocks to text.
 *
 * h2scope/http2/huffman.py (decode_walk) and hpack_state.py (HeaderDecoder._decode_fast)
 * walk the same machine and decode the same blocks in compiled Python; they are the
 * reference, and what runs without a C compiler or with H2SCOPE_PURE_PYTHON set. The tables
 * (hpack's static table and Huffman machine) are handed in from those modules by configure():
 * nothing of hpack's data is duplicated here.
 *
 * Why by hand. Where header values never repeat (W2: a unique traceparent and x-request-id
 * per call, as OpenTelemetry-instrumented services send), every block is decoded afresh:
 * - the Huffman walk in compiled Python was 88 M of the 598 M instructions of W2-2MB's
 *   pipeline, every emitted symbol a Python int appended to a list; 9 M in C;
 * - decoding blocks in compiled Python was 86 M of W2-2MB's 410 M, and 69 M of W4-2MB's
 *   464 M: each field's bytes decoded to a new str every time it was referenced, the table
 *   copied before every block so a failed one could be undone, and hpack's interpreted table
 *   read attribute by attribute. Here a table entry holds its text once, a block's changes
 *   are undone from indices (evicted entries are released only when the block is done), and
 *   the table is a C array.
 *
 * Table.decode(block) returns the block's fields as (name, value) str pairs, or None where
 * it would not decide (anything hpack might refuse or word differently: a bad index or
 * integer, a truncated or invalid string, a misplaced or oversized table size update). On
 * None the table is exactly as before the call, and hpack decides from entries() and load().
 * tests/test_hpack_fast.py holds this, the compiled-Python path and hpack equal on every
 * captured block, on generated and random blocks, and on blocks given up on midway.
 *
 * Bounds: integers of more than five continuation bytes are left to hpack, which refuses
 * them; a string is checked against the block before it is read; Huffman
 * output is at most twice its input. The entry array grows with the table (at most one
 * entry per 32 bytes of table size, plus a block's own additions until it is done), is
 * compacted once its evicted prefix outgrows its live entries, and given back once it is
 * four times larger than they need. A header list past hpack's limit (1 GiB as hpack
 * counts it) is left to hpack, which refuses it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* hpack.huffman_constants; huffman.py checks that hpack still uses these values. */
#define HUFFMAN_COMPLETE 1
#define HUFFMAN_EMIT_SYMBOL 2
#define HUFFMAN_FAIL 4
#define TABLE_SIZE 4096

#define ENTRY_OVERHEAD 32          /* RFC 7541 §4.1 */
#define MAX_TABLE_SIZE (1 << 30)   /* hpack_state's max_allowed_table_size */
#define MAX_HEADER_LIST (1 << 30)  /* hpack_state's max_header_list_size: past it, hpack refuses */
#define INTEGER_LIMIT_SHIFT 28     /* hpack refuses a sixth continuation byte (VARINT_MAX_LENGTH) */
#define NSTATIC 61

/* Walks `n` bytes of Huffman code into `out` (room for 2 * n). Returns the length written,
 * or -1 for an invalid or incomplete code (where hpack raises). */
static Py_ssize_t
huffman_walk(const unsigned char *in, Py_ssize_t n, const unsigned char *next, const unsigned char *flags,
             const unsigned char *symbols, unsigned char *out)
{
    Py_ssize_t k = 0;
    unsigned int state = 0, f = HUFFMAN_COMPLETE, i;
    for (Py_ssize_t q = 0; q < 2 * n; q++) {
        /* Each byte's high nibble, then its low one, as hpack does. */
        unsigned int nibble = (q & 1) ? (in[q >> 1] & 0x0F) : (in[q >> 1] >> 4);
        i = state * 16 + nibble;
        f = flags[i];
        if (f & HUFFMAN_FAIL) {
            return -1;
        }
        if (f & HUFFMAN_EMIT_SYMBOL) {
            out[k++] = symbols[i];
        }
        state = next[i];
    }
    return (f & HUFFMAN_COMPLETE) ? k : -1;
}

static int
check_tables(PyObject *next, PyObject *flags, PyObject *symbols)
{
    PyObject *t[3] = {next, flags, symbols};
    for (int a = 0; a < 3; a++) {
        if (!PyBytes_Check(t[a])) {
            PyErr_SetString(PyExc_TypeError, "the Huffman tables must be bytes");
            return -1;
        }
        if (PyBytes_GET_SIZE(t[a]) != TABLE_SIZE) {
            PyErr_SetString(PyExc_ValueError, "the Huffman tables must be 4096 bytes each");
            return -1;
        }
    }
    return 0;
}

static PyObject *
walk(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "walk(data, next_states, flags, symbols) takes 4 arguments");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "walk: every argument must be bytes");
        return NULL;
    }
    if (check_tables(args[1], args[2], args[3]) < 0) {
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    if (n == 0) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (n > PY_SSIZE_T_MAX / 2) {
        return PyErr_NoMemory();
    }
    unsigned char *out = PyMem_Malloc((size_t)(2 * n));
    if (out == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t k = huffman_walk((const unsigned char *)PyBytes_AS_STRING(args[0]), n,
                                (const unsigned char *)PyBytes_AS_STRING(args[1]),
                                (const unsigned char *)PyBytes_AS_STRING(args[2]),
                                (const unsigned char *)PyBytes_AS_STRING(args[3]), out);
    PyObject *result = k < 0 ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize((const char *)out, k);
    PyMem_Free(out);
    return result;
}

/* ---- what configure() hands in ---------------------------------------------------- */

static PyObject *static_fields;   /* hpack's STATIC_TABLE: 61 (bytes, bytes) */
static PyObject *static_texts;    /* the same as (str, str) */
static PyObject *unknown_field;   /* (UNKNOWN bytes, UNKNOWN bytes) */
static PyObject *unknown_text;    /* (UNKNOWN, UNKNOWN) */
static PyObject *huff_next, *huff_flags, *huff_symbols;
static Py_ssize_t memo_max = 256;  /* hpack_state.MEMO_MAX */

static PyObject *
text_of(const char *s, Py_ssize_t n)
{
    /* Strict UTF-8, falling back to U+FFFD where it is not: the error handler is only looked
     * up on an error, so "replace" costs nothing on valid text. */
    return PyUnicode_DecodeUTF8(s, n, "replace");
}

/* (a, b), stealing both references; NULL (both released) if either is NULL. */
static PyObject *
pair_of(PyObject *a, PyObject *b)
{
    PyObject *pair = (a != NULL && b != NULL) ? PyTuple_Pack(2, a, b) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return pair;
}

static PyObject *
text_pair(PyObject *field)
{
    PyObject *name = PyTuple_GET_ITEM(field, 0), *value = PyTuple_GET_ITEM(field, 1);
    PyObject *n = text_of(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name));
    return pair_of(n, n == NULL ? NULL : text_of(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)));
}

/* A 2-tuple of bytes (made from any pair whose items bytes() accepts), new reference. */
static PyObject *
bytes_field(PyObject *pair)
{
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "a table entry must be a (name, value) tuple");
        return NULL;
    }
    PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
    if (PyBytes_CheckExact(name) && PyBytes_CheckExact(value)) {
        return Py_NewRef(pair);
    }
    PyObject *n = PyBytes_FromObject(name);
    return pair_of(n, n == NULL ? NULL : PyBytes_FromObject(value));
}

static PyObject *
configure(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *statics, *unknown, *next, *flags, *symbols;
    Py_ssize_t memo;
    if (!PyArg_ParseTuple(args, "O!SSSSn:configure", &PyTuple_Type, &statics, &unknown, &next, &flags, &symbols,
                          &memo)) {
        return NULL;
    }
    if (memo < 1) {
        PyErr_SetString(PyExc_ValueError, "configure: the memo must hold at least one block");
        return NULL;
    }
    if (PyTuple_GET_SIZE(statics) != NSTATIC) {
        PyErr_SetString(PyExc_ValueError, "configure: the static table must have 61 entries");
        return NULL;
    }
    if (check_tables(next, flags, symbols) < 0) {
        return NULL;
    }
    PyObject *fields = PyTuple_New(NSTATIC), *texts = PyTuple_New(NSTATIC);
    PyObject *ufield = PyTuple_Pack(2, unknown, unknown);
    PyObject *utext = ufield == NULL ? NULL : text_pair(ufield);
    if (fields == NULL || texts == NULL || utext == NULL) {
        goto fail;
    }
    for (Py_ssize_t k = 0; k < NSTATIC; k++) {
        PyObject *f = bytes_field(PyTuple_GET_ITEM(statics, k));
        if (f == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(fields, k, f);
        PyObject *t = text_pair(f);
        if (t == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(texts, k, t);
    }
    Py_XSETREF(static_fields, fields);
    Py_XSETREF(static_texts, texts);
    Py_XSETREF(unknown_field, ufield);
    Py_XSETREF(unknown_text, utext);
    Py_XSETREF(huff_next, Py_NewRef(next));
    Py_XSETREF(huff_flags, Py_NewRef(flags));
    Py_XSETREF(huff_symbols, Py_NewRef(symbols));
    memo_max = memo;
    Py_RETURN_NONE;
fail:
    Py_XDECREF(fields);
    Py_XDECREF(texts);
    Py_XDECREF(ufield);
    Py_XDECREF(utext);
    return NULL;
}

/* ---- the table ---------------------------------------------------------------------- */

/* Entries live in [start, end) of two parallel arrays, oldest first (HPACK's index 62 is
 * end - 1). Slots below start are NULL, except during decode(), when those evicted by the
 * block are kept until it is done, so that a block given up on can be put back. */
typedef struct {
    PyObject_HEAD
    PyObject **fields;   /* (bytes, bytes): what hpack's table holds */
    PyObject **texts;    /* (str, str): what decode() returns */
    Py_ssize_t start, end, cap;
    Py_ssize_t size, maxsize;
    long long generation;   /* +1 per entry added and per size update, as ObserverTable counts */
    Py_ssize_t unknown_refs;
    int partial;
    /* hpack_state's memo: block -> decode()'s result, for blocks decoded at memo_generation
     * that left the table as it was (a block decodes the same way against the same table). */
    PyObject *memo;
    long long memo_generation;
    Py_ssize_t memo_hits;
    Py_ssize_t announced_max;  /* the decoding side's SETTINGS_HEADER_TABLE_SIZE */
} Table;

static PyTypeObject TableType;

static Py_ssize_t
entry_size(PyObject *field)
{
    return PyBytes_GET_SIZE(PyTuple_GET_ITEM(field, 0)) + PyBytes_GET_SIZE(PyTuple_GET_ITEM(field, 1))
           + ENTRY_OVERHEAD;
}

static void
release(Table *t, Py_ssize_t from, Py_ssize_t to)
{
    for (Py_ssize_t k = from; k < to; k++) {
        Py_CLEAR(t->fields[k]);
        Py_CLEAR(t->texts[k]);
    }
}

static void
clear_entries(Table *t)
{
    release(t, 0, t->end);
    t->start = t->end = 0;
    t->size = 0;
}

/* Moves the live entries to the front once the released prefix outgrows them (amortized:
 * a memmove of n entries after at least n evictions). */
static void
compact(Table *t)
{
    Py_ssize_t live = t->end - t->start;
    if (t->start == 0 || t->start < live) {
        return;
    }
    memmove(t->fields, t->fields + t->start, (size_t)live * sizeof(PyObject *));
    memmove(t->texts, t->texts + t->start, (size_t)live * sizeof(PyObject *));
    memset(t->fields + live, 0, (size_t)t->start * sizeof(PyObject *));
    memset(t->texts + live, 0, (size_t)t->start * sizeof(PyObject *));
    t->end = live;
    t->start = 0;
    if (t->cap > 1024 && t->cap > 4 * live) {
        /* A block that added (and evicted) many entries grew the arrays: give that back, so
         * that what a decoder keeps follows its table, not its largest block. */
        Py_ssize_t cap = live < 8 ? 16 : 2 * live;
        PyObject **f = PyMem_Malloc((size_t)cap * sizeof(PyObject *));
        PyObject **x = PyMem_Malloc((size_t)cap * sizeof(PyObject *));
        if (f != NULL && x != NULL) {
            memcpy(f, t->fields, (size_t)live * sizeof(PyObject *));
            memcpy(x, t->texts, (size_t)live * sizeof(PyObject *));
            memset(f + live, 0, (size_t)(cap - live) * sizeof(PyObject *));
            memset(x + live, 0, (size_t)(cap - live) * sizeof(PyObject *));
            PyMem_Free(t->fields);
            PyMem_Free(t->texts);
            t->fields = f;
            t->texts = x;
            t->cap = cap;
        }
        else {  /* keep the larger arrays */
            PyMem_Free(f);
            PyMem_Free(x);
        }
    }
}

/* Appends the newest entry (steals both references). -1 on MemoryError (references released). */
static int
push(Table *t, PyObject *field, PyObject *text)
{
    if (t->end == t->cap) {
        Py_ssize_t cap = t->cap < 16 ? 16 : t->cap * 2;
        if (cap > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(PyObject *)) {
            goto nomem;
        }
        PyObject **f = PyMem_Realloc(t->fields, (size_t)cap * sizeof(PyObject *));
        if (f == NULL) {
            goto nomem;
        }
        t->fields = f;
        PyObject **x = PyMem_Realloc(t->texts, (size_t)cap * sizeof(PyObject *));
        if (x == NULL) {
            goto nomem;
        }
        t->texts = x;
        memset(t->fields + t->cap, 0, (size_t)(cap - t->cap) * sizeof(PyObject *));
        memset(t->texts + t->cap, 0, (size_t)(cap - t->cap) * sizeof(PyObject *));
        t->cap = cap;
    }
    t->fields[t->end] = field;
    t->texts[t->end] = text;
    t->end++;
    return 0;
nomem:
    Py_DECREF(field);
    Py_DECREF(text);
    PyErr_NoMemory();
    return -1;
}

/* hpack's _shrink: evict the oldest until the table fits (the evicted stay in their slots). */
static void
shrink(Table *t)
{
    while (t->size > t->maxsize && t->start < t->end) {
        t->size -= entry_size(t->fields[t->start]);
        t->start++;
    }
}

/* ---- decoding one block ------------------------------------------------------------- */

enum { OK = 0, SLOW = 1, FAILED = -1 };

/* RFC 7541 §5.1. SLOW for a truncated integer or one past the limit. */
static int
integer(const unsigned char *b, Py_ssize_t n, Py_ssize_t *i, unsigned int mask, Py_ssize_t *out)
{
    Py_ssize_t v = b[*i] & mask;
    (*i)++;
    if (v < (Py_ssize_t)mask) {
        *out = v;
        return OK;
    }
    for (int shift = 0;; shift += 7) {
        if (shift > INTEGER_LIMIT_SHIFT || *i >= n) {
            return SLOW;
        }
        unsigned int c = b[(*i)++];
        v += (Py_ssize_t)(c & 0x7F) << shift;
        if (c < 0x80) {
            *out = v;
            return OK;
        }
    }
}

/* A string literal (§5.2) at b[*i]: its bytes (when want_bytes) and its text, new references. */
static int
string(const unsigned char *b, Py_ssize_t n, Py_ssize_t *i, int want_bytes, PyObject **bytes_out,
       PyObject **text_out, Py_ssize_t *decoded)
{
    int huff = b[*i] & 0x80;
    Py_ssize_t length;
    if (integer(b, n, i, 0x7F, &length) != OK || length > n - *i) {
        return SLOW;
    }
    const char *s = (const char *)b + *i;
    *i += length;
    unsigned char stack[512];
    unsigned char *buf = NULL;
    if (huff) {
        buf = length <= 256 ? stack : PyMem_Malloc((size_t)(2 * length));
        if (buf == NULL) {
            PyErr_NoMemory();
            return FAILED;
        }
        length = huffman_walk((const unsigned char *)s, length, (const unsigned char *)PyBytes_AS_STRING(huff_next),
                              (const unsigned char *)PyBytes_AS_STRING(huff_flags),
                              (const unsigned char *)PyBytes_AS_STRING(huff_symbols), buf);
        s = (const char *)buf;
    }
    int rc = OK;
    *bytes_out = *text_out = NULL;
    *decoded = length;
    if (length < 0) {
        rc = SLOW;
    }
    else {
        if (want_bytes && (*bytes_out = PyBytes_FromStringAndSize(s, length)) == NULL) {
            rc = FAILED;
        }
        else if ((*text_out = text_of(s, length)) == NULL) {
            Py_CLEAR(*bytes_out);
            rc = FAILED;
        }
    }
    if (buf != NULL && buf != stack) {
        PyMem_Free(buf);
    }
    return rc;
}

/* Index `idx` (1-based: static, then dynamic newest first): borrowed field and text, or
 * UNKNOWN past what a partial table knows. SLOW for 0 or beyond the table. */
static int
lookup(Table *t, Py_ssize_t idx, PyObject **field, PyObject **text)
{
    if (idx <= 0) {
        return SLOW;
    }
    if (idx <= NSTATIC) {
        *field = PyTuple_GET_ITEM(static_fields, idx - 1);
        *text = PyTuple_GET_ITEM(static_texts, idx - 1);
        return OK;
    }
    Py_ssize_t k = idx - NSTATIC - 1;
    if (k < t->end - t->start) {
        *field = t->fields[t->end - 1 - k];
        *text = t->texts[t->end - 1 - k];
        return OK;
    }
    if (t->partial) {
        t->unknown_refs++;
        *field = unknown_field;
        *text = unknown_text;
        return OK;
    }
    return SLOW;
}

/* A literal field (§6.2): its name by index (the prefix under `mask`) or as a string, then
 * its value. New references; the bytes only when `indexing` (the table keeps them). */
static int
literal(Table *t, const unsigned char *b, Py_ssize_t n, Py_ssize_t *i, unsigned int mask, int indexing,
        PyObject **name_b, PyObject **name_s, PyObject **value_b, PyObject **value_s, Py_ssize_t *listed)
{
    Py_ssize_t idx, name_len = 0, value_len = 0;
    int rc;
    *name_b = *name_s = *value_b = *value_s = NULL;
    if (integer(b, n, i, mask, &idx) != OK) {
        return SLOW;
    }
    if (idx) {
        PyObject *field, *text;
        if ((rc = lookup(t, idx, &field, &text)) != OK) {
            return rc;
        }
        *name_b = Py_NewRef(PyTuple_GET_ITEM(field, 0));
        *name_s = Py_NewRef(PyTuple_GET_ITEM(text, 0));
        name_len = PyBytes_GET_SIZE(*name_b);
    }
    else {
        if (*i >= n) {
            return SLOW;
        }
        if ((rc = string(b, n, i, indexing, name_b, name_s, &name_len)) != OK) {
            return rc;
        }
    }
    if (*i >= n) {
        rc = SLOW;
    }
    else {
        rc = string(b, n, i, indexing, value_b, value_s, &value_len);
    }
    *listed = name_len + value_len + ENTRY_OVERHEAD;  /* what hpack counts against the list's size */
    if (rc != OK) {
        Py_CLEAR(*name_b);
        Py_CLEAR(*name_s);
    }
    return rc;
}

/* The block's fields as a list of (str, str), or None where hpack must decide (the table
 * as before), or NULL with an exception. */
static PyObject *
decode_block(Table *t, PyObject *block)
{
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(block);
    Py_ssize_t n = PyBytes_GET_SIZE(block), i = 0;
    /* What a block given up on puts back. */
    Py_ssize_t start0 = t->start, end0 = t->end, size0 = t->size, maxsize0 = t->maxsize;
    Py_ssize_t unknown0 = t->unknown_refs;
    long long generation0 = t->generation;
    long long adds = 0;
    Py_ssize_t listed = 0, one = 0;  /* the header list's size as hpack counts it */
    int rc = OK;
    PyObject *headers = PyList_New(0);
    if (headers == NULL) {
        return NULL;
    }
    while (i < n && rc == OK) {
        unsigned int c = b[i];
        if (c & 0x80) {  /* indexed field */
            Py_ssize_t idx;
            PyObject *field, *text;
            if ((rc = integer(b, n, &i, 0x7F, &idx)) != OK || (rc = lookup(t, idx, &field, &text)) != OK) {
                break;
            }
            listed += entry_size(field);
            if (PyList_Append(headers, text) < 0) {
                rc = FAILED;
            }
        }
        else if (c & 0x40) {  /* literal with incremental indexing: HeaderTable.add */
            PyObject *nb, *ns, *vb, *vs;
            if ((rc = literal(t, b, n, &i, 0x3F, 1, &nb, &ns, &vb, &vs, &one)) != OK) {
                break;
            }
            listed += one;
            PyObject *field = pair_of(nb, vb), *text = pair_of(ns, vs);
            if (field == NULL || text == NULL || PyList_Append(headers, text) < 0) {
                Py_XDECREF(field);
                Py_XDECREF(text);
                rc = FAILED;
                break;
            }
            adds++;
            Py_ssize_t size = entry_size(field);
            if (size > t->maxsize) {  /* larger than the table: it empties, and keeps nothing */
                t->start = t->end;
                t->size = 0;
                Py_DECREF(field);
                Py_DECREF(text);
            }
            else {
                if (push(t, field, text) < 0) {
                    rc = FAILED;
                    break;
                }
                t->size += size;
                shrink(t);
            }
        }
        else if (c & 0x20) {  /* dynamic table size update: only before the first field */
            Py_ssize_t new_max;
            if (PyList_GET_SIZE(headers) || (rc = integer(b, n, &i, 0x1F, &new_max)) != OK || new_max > MAX_TABLE_SIZE) {
                rc = SLOW;
                break;
            }
            t->maxsize = new_max;
            t->generation++;
            shrink(t);
        }
        else {  /* literal without indexing, or never indexed */
            PyObject *nb, *ns, *vb, *vs;
            if ((rc = literal(t, b, n, &i, 0x0F, 0, &nb, &ns, &vb, &vs, &one)) != OK) {
                break;
            }
            listed += one;
            Py_XDECREF(nb);
            PyObject *text = pair_of(ns, vs);
            if (text == NULL || PyList_Append(headers, text) < 0) {
                Py_XDECREF(text);
                rc = FAILED;
            }
            else {
                Py_DECREF(text);
            }
        }
    }
    if (rc == OK && listed > MAX_HEADER_LIST) {
        rc = SLOW;  /* hpack refuses the list (OversizedHeaderListError) and words it */
    }
    if (rc != OK) {  /* put the table back as it was */
        Py_DECREF(headers);
        release(t, end0, t->end);
        t->end = end0;
        t->start = start0;
        t->size = size0;
        t->maxsize = maxsize0;
        t->unknown_refs = unknown0;
        t->generation = generation0;
        if (rc == FAILED) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    release(t, start0, t->start);  /* what the block evicted */
    compact(t);
    t->generation += adds;
    return headers;
}

/* Keeps `result` as the answer for `block` at the current generation. */
static int
remember(Table *t, PyObject *block, PyObject *result)
{
    if (t->memo == NULL && (t->memo = PyDict_New()) == NULL) {
        return -1;
    }
    if (t->memo_generation != t->generation || PyDict_GET_SIZE(t->memo) >= memo_max) {
        PyDict_Clear(t->memo);
        t->memo_generation = t->generation;
    }
    return PyDict_SetItem(t->memo, block, result);
}

/* HeaderDecoder.decode()'s result, (headers, error, had_unknown), or None where hpack must
 * decide (the table as before, the block not counted). */
static PyObject *
Table_decode(Table *t, PyObject *block)
{
    if (static_texts == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_hpack_c.configure() was not called");
        return NULL;
    }
    if (!PyBytes_CheckExact(block)) {
        PyErr_SetString(PyExc_TypeError, "decode: the block must be bytes");
        return NULL;
    }
    if (t->memo != NULL && t->memo_generation == t->generation) {
        PyObject *hit = PyDict_GetItemWithError(t->memo, block);
        if (hit != NULL) {
            t->memo_hits++;
            return Py_NewRef(hit);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    long long generation0 = t->generation;
    Py_ssize_t unknown0 = t->unknown_refs;
    PyObject *headers = decode_block(t, block);
    if (headers == NULL || headers == Py_None) {
        return headers;
    }
    int had_unknown = t->unknown_refs != unknown0;
    PyObject *result = PyTuple_Pack(3, headers, Py_None, had_unknown ? Py_True : Py_False);
    Py_DECREF(headers);
    if (result == NULL) {
        return NULL;
    }
    if (t->generation == generation0 && !had_unknown && remember(t, block, result) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    if (t->maxsize > t->announced_max) {
        PyObject *error = PyUnicode_FromFormat(
            "dynamic table size %zd exceeds the announced SETTINGS_HEADER_TABLE_SIZE %zd", t->maxsize, t->announced_max);
        if (error == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyObject *with_error = PyTuple_Pack(3, PyTuple_GET_ITEM(result, 0), error, PyTuple_GET_ITEM(result, 2));
        Py_DECREF(error);
        Py_DECREF(result);
        return with_error;
    }
    return result;
}

/* After hpack decided a block: memoize its headers as decode() would have. */
static PyObject *
Table_decided(Table *t, PyObject *args)
{
    PyObject *block, *headers;
    int unchanged;
    if (!PyArg_ParseTuple(args, "SO!p:decided", &block, &PyList_Type, &headers, &unchanged)) {
        return NULL;
    }
    if (unchanged) {
        PyObject *result = PyTuple_Pack(3, headers, Py_None, Py_False);
        if (result == NULL) {
            return NULL;
        }
        int rc = remember(t, block, result);
        Py_DECREF(result);
        if (rc < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* ---- the rest of the type ------------------------------------------------------------- */

static PyObject *
Table_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"partial", NULL};
    int partial = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:Table", kwlist, &partial)) {
        return NULL;
    }
    Table *t = (Table *)type->tp_alloc(type, 0);
    if (t == NULL) {
        return NULL;
    }
    t->maxsize = t->announced_max = 4096;  /* SETTINGS_HEADER_TABLE_SIZE's initial value */
    t->partial = partial;
    return (PyObject *)t;
}

static void
Table_dealloc(Table *t)
{
    if (t->fields != NULL) {
        release(t, 0, t->end);
    }
    PyMem_Free(t->fields);
    PyMem_Free(t->texts);
    Py_XDECREF(t->memo);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *
Table_entries(Table *t, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(t->end - t->start);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = t->end - 1, j = 0; k >= t->start; k--, j++) {
        PyList_SET_ITEM(out, j, Py_NewRef(t->fields[k]));
    }
    return out;
}

static PyObject *
Table_load(Table *t, PyObject *args)
{
    PyObject *entries;
    Py_ssize_t size, maxsize;
    if (!PyArg_ParseTuple(args, "Onn:load", &entries, &size, &maxsize)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(entries, "load: entries must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    clear_entries(t);
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t j = count - 1; j >= 0; j--) {  /* given newest first, as hpack's deque */
        PyObject *field = bytes_field(PySequence_Fast_GET_ITEM(seq, j));
        PyObject *text = field == NULL ? NULL : text_pair(field);
        if (text == NULL) {
            Py_XDECREF(field);
            Py_DECREF(seq);
            clear_entries(t);
            return NULL;
        }
        if (push(t, field, text) < 0) {
            Py_DECREF(seq);
            clear_entries(t);
            return NULL;
        }
    }
    Py_DECREF(seq);
    t->size = size;
    t->maxsize = maxsize;
    Py_RETURN_NONE;
}

static PyObject *
Table_lose_state(Table *t, PyObject *Py_UNUSED(ignored))
{
    clear_entries(t);
    t->partial = 1;
    t->generation++;
    Py_RETURN_NONE;
}

static PyObject *
Table_copy(Table *t, PyObject *Py_UNUSED(ignored))
{  /* also __copy__ and __deepcopy__: entries are immutable, so a shallow copy is deep */
    Table *c = (Table *)TableType.tp_alloc(&TableType, 0);
    if (c == NULL) {
        return NULL;
    }
    c->maxsize = t->maxsize;
    c->announced_max = t->announced_max;
    c->partial = t->partial;
    c->memo_hits = t->memo_hits;
    c->memo_generation = t->memo_generation;
    if (t->memo != NULL && (c->memo = PyDict_Copy(t->memo)) == NULL) {
        Py_DECREF(c);
        return NULL;
    }
    c->generation = t->generation;
    c->unknown_refs = t->unknown_refs;
    for (Py_ssize_t k = t->start; k < t->end; k++) {
        if (push(c, Py_NewRef(t->fields[k]), Py_NewRef(t->texts[k])) < 0) {
            Py_DECREF(c);
            return NULL;
        }
    }
    c->size = t->size;
    return (PyObject *)c;
}

static Py_ssize_t
Table_len(Table *t)
{
    return t->end - t->start;
}

static PyObject *
Table_get_generation(Table *t, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(t->generation);
}

static int
Table_set_generation(Table *t, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "generation cannot be deleted");
        return -1;
    }
    long long g = PyLong_AsLongLong(value);
    if (g == -1 && PyErr_Occurred()) {
        return -1;
    }
    t->generation = g;
    return 0;
}

static PyMemberDef Table_members[] = {
    {"size", T_PYSSIZET, offsetof(Table, size), READONLY, "the entries' total size (RFC 7541 §4.1)"},
    {"maxsize", T_PYSSIZET, offsetof(Table, maxsize), READONLY, "the size limit, as the last size update set it"},
    {"unknown_refs", T_PYSSIZET, offsetof(Table, unknown_refs), 0, "references past what a partial table knows"},
    {"partial", T_BOOL, offsetof(Table, partial), 0, "older entries are unknown (capture started mid-connection)"},
    {"memo_hits", T_PYSSIZET, offsetof(Table, memo_hits), READONLY, "blocks answered from the memo"},
    {"announced_max", T_PYSSIZET, offsetof(Table, announced_max), 0, "the decoding side's SETTINGS_HEADER_TABLE_SIZE"},
    {"capacity", T_PYSSIZET, offsetof(Table, cap), READONLY, "entry slots allocated (for the tests)"},
    {NULL},
};

static PyGetSetDef Table_getset[] = {
    {"generation", (getter)Table_get_generation, (setter)Table_set_generation,
     "changes with every change to the table (the memo's key)", NULL},
    {NULL},
};

static PyMethodDef Table_methods[] = {
    {"decode", (PyCFunction)Table_decode, METH_O,
     "decode(block) -> (headers, error, had_unknown), or None (the table untouched) where hpack must decide"},
    {"decided", (PyCFunction)Table_decided, METH_VARARGS,
     "decided(block, headers, unchanged): hpack decoded the block; memoize it if the table was unchanged"},
    {"entries", (PyCFunction)Table_entries, METH_NOARGS, "entries() -> [(name, value) bytes], newest first"},
    {"load", (PyCFunction)Table_load, METH_VARARGS, "load(entries newest first, size, maxsize): hpack's table, after it decided"},
    {"lose_state", (PyCFunction)Table_lose_state, METH_NOARGS, "forget every entry; the table is partial from now on"},
    {"copy", (PyCFunction)Table_copy, METH_NOARGS, "an independent copy"},
    {"__copy__", (PyCFunction)Table_copy, METH_NOARGS, NULL},
    {"__deepcopy__", (PyCFunction)Table_copy, METH_O, NULL},
    {NULL},
};

static PySequenceMethods Table_as_sequence = {
    .sq_length = (lenfunc)Table_len,
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "h2scope.http2._hpack_c.Table",
    .tp_basicsize = sizeof(Table),
    .tp_flags = Py_TPFLAGS_DEFAULT,  /* no GC: it holds tuples of bytes and str, which make no cycles */
    .tp_doc = "Table(partial=False): an HPACK decoding dynamic table that decodes blocks to text",
    .tp_new = Table_new,
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_methods = Table_methods,
    .tp_members = Table_members,
    .tp_getset = Table_getset,
    .tp_as_sequence = &Table_as_sequence,
};

static PyMethodDef methods[] = {
    {"walk", (PyCFunction)(void (*)(void))walk, METH_FASTCALL,
     "walk(data, next_states, flags, symbols) -> bytes, or None where hpack raises"},
    {"configure", (PyCFunction)configure, METH_VARARGS,
     "configure(static_table, unknown, next_states, flags, symbols): hpack's tables, once"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_hpack_c",
    .m_doc = "HPACK's Huffman machine and a decoding table in C (see huffman.py and hpack_state.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__hpack_c(void)
{
    if (PyType_Ready(&TableType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Table", (PyObject *)&TableType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
