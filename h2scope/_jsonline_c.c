/* A stream's JSON line in C: model.StreamRecord.compact_json_after_conn's numbers, times,
 * lists and metadata written into one buffer.
 *
 * model.py builds the same line in compiled Python (_stream_line_py) and stays the
 * reference, and what runs without a C compiler or with H2SCOPE_PURE_PYTHON set;
 * tests/test_model_json.py holds the two equal byte for byte on every stream of every
 * stored capture and on generated records, and the times to repr(ns / 1e9).
 *
 * Why by hand. Every stream's line is built where the stream is decoded, and it was the
 * largest single cost left per call: 65 M of W1-2MB's 287 M pipeline instructions and 78 M
 * of W2-2MB's 310 M (callgrind, `analyze --format json --jobs 1`). In compiled Python each
 * int became a str, each time a float and then a str, each piece a separate object joined
 * at the end, and each metadata value went through json's encoder object by object. With
 * this file: W1 287 -> 256 M (-11%), W2 310 -> 262 M (-16%), W4 367 -> 331 M (-10%).
 *
 * line(t) takes a tuple (see model._stream_line_c for its fields) and returns the line's
 * text, or None where it will not decide (an int past 63 bits, text that is not valid
 * UTF-8 such as a lone surrogate, anything not of the expected type): model.py then builds
 * the line itself. Text is JSON-escaped as json.dumps(..., ensure_ascii=False) does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

/* ---- an output buffer --------------------------------------------------------------- */

typedef struct {
    char *p;
    Py_ssize_t n, cap;
    int failed;  /* 1: out of memory (an exception is set); 2: give up, no exception */
    int ascii;   /* every byte written is ASCII (the str is then made without decoding) */
    char stack[4096];
} Out;

static int grow_slow(Out *o, Py_ssize_t more);

static void
out_init(Out *o)
{
    o->n = 0;
    o->cap = (Py_ssize_t)sizeof(o->stack);
    o->failed = 0;
    o->ascii = 1;
    o->p = o->stack;
}

/* What was written, as a str (NULL if anything failed or gave up); the buffer is freed. */
static PyObject *
out_text(Out *o)
{
    PyObject *result = NULL;
    if (o->failed == 0 && o->ascii) {  /* nearly every line: no decoding needed */
        result = PyUnicode_New(o->n, 127);
        if (result != NULL) {
            memcpy(PyUnicode_1BYTE_DATA(result), o->p, (size_t)o->n);
        }
    }
    else if (o->failed == 0) {
        result = PyUnicode_DecodeUTF8(o->p, o->n, NULL);
    }
    if (o->p != o->stack) {
        PyMem_Free(o->p);
        o->p = o->stack;
    }
    return result;
}

/* Room for `more` bytes. Inline: a line is about 50 pieces, and most fit the stack buffer. */
static inline int
grow(Out *o, Py_ssize_t more)
{
    if (o->n + more <= o->cap && !o->failed) {
        return 0;
    }
    return grow_slow(o, more);
}

static int
grow_slow(Out *o, Py_ssize_t more)
{
    if (o->failed) {
        return -1;
    }
    Py_ssize_t cap = o->cap * 2;
    while (cap < o->n + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            o->failed = 1;
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *p;
    if (o->p == o->stack) {
        p = PyMem_Malloc((size_t)cap);
        if (p != NULL) {
            memcpy(p, o->stack, (size_t)o->n);
        }
    }
    else {
        p = PyMem_Realloc(o->p, (size_t)cap);
    }
    if (p == NULL) {
        o->failed = 1;
        PyErr_NoMemory();
        return -1;
    }
    o->p = p;
    o->cap = cap;
    return 0;
}

static inline void
raw(Out *o, const char *s, Py_ssize_t n)
{
    if (grow(o, n) == 0) {
        memcpy(o->p + o->n, s, (size_t)n);
        o->n += n;
    }
}

#define LIT(o, s) raw((o), (s), (Py_ssize_t)(sizeof(s) - 1))

static void
give_up(Out *o)
{
    if (!o->failed) {
        o->failed = 2;
    }
}

static void
ll(Out *o, long long v)
{
    char tmp[24];
    int k = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        tmp[k++] = '-';
    }
    if (grow(o, k) == 0) {
        for (int j = 0; j < k; j++) {
            o->p[o->n + j] = tmp[k - 1 - j];
        }
        o->n += k;
    }
}

/* v as a C long long: 0, or -1 (and give up) for anything but an int of at most 63 bits,
 * which model.py writes itself. */
static int
as_ll(Out *o, PyObject *v, long long *x)
{
    int overflow = 0;
    if (PyLong_CheckExact(v)) {
        *x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow && !(*x == -1 && PyErr_Occurred())) {
            return 0;
        }
        PyErr_Clear();
    }
    give_up(o);
    return -1;
}

/* str(v) for an int */
static void
integer(Out *o, PyObject *v)
{
    long long x;
    if (as_ll(o, v, &x) == 0) {
        ll(o, x);
    }
}

static void
int_or_null(Out *o, PyObject *v)
{
    if (v == Py_None) {
        LIT(o, "null");
    }
    else {
        integer(o, v);
    }
}

static void
boolean(Out *o, PyObject *v)
{
    if (v == Py_True) {
        LIT(o, "true");
    }
    else if (v == Py_False) {
        LIT(o, "false");
    }
    else {
        give_up(o);
    }
}

/* A str's UTF-8 (and whether the line stays ASCII); NULL, having given up, for anything
 * else or for text that is not valid UTF-8 (a lone surrogate). */
static const char *
utf8(Out *o, PyObject *v, Py_ssize_t *n)
{
    const char *s = PyUnicode_Check(v) ? PyUnicode_AsUTF8AndSize(v, n) : NULL;
    if (s == NULL) {
        PyErr_Clear();
        give_up(o);
        return NULL;
    }
    o->ascii &= PyUnicode_IS_ASCII(v);
    return s;
}

/* Text as is (already JSON, built by model.py). */
static void
verbatim(Out *o, PyObject *v)
{
    Py_ssize_t n;
    const char *s = utf8(o, v, &n);
    if (s != NULL) {
        raw(o, s, n);
    }
}

/* json.encoder.encode_basestring (ensure_ascii=False): quotes, backslash and the control
 * characters below 0x20 escaped, everything else as is. */
static void
jstring(Out *o, PyObject *v)
{
    Py_ssize_t n;
    const char *s = utf8(o, v, &n);
    if (s == NULL || grow(o, n + 2) < 0) {
        return;
    }
    o->p[o->n++] = '"';
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        raw(o, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': LIT(o, "\\\""); break;
        case '\\': LIT(o, "\\\\"); break;
        case '\b': LIT(o, "\\b"); break;
        case '\f': LIT(o, "\\f"); break;
        case '\n': LIT(o, "\\n"); break;
        case '\r': LIT(o, "\\r"); break;
        case '\t': LIT(o, "\\t"); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 0xF]};
            raw(o, esc, 6);
        }
        }
    }
    raw(o, s + run, n - run);
    LIT(o, "\"");
}

/* ---- times: model._jsec, repr(ns / 1e9) ------------------------------------------------ */

static const long long SEC_FAST_MIN = 100000LL;
static const long long SEC_FAST_MAX = 4000000000000000000LL;

/* whole.frac, frac as six digits less its trailing zeros (".0" for none): model._six_digits. */
static void
six_digits(Out *o, long long whole, long long frac)
{
    ll(o, whole);
    if (frac == 0) {
        LIT(o, ".0");
        return;
    }
    char d[7];
    d[0] = '.';
    for (int k = 6; k >= 1; k--) {
        d[k] = (char)('0' + frac % 10);
        frac /= 10;
    }
    int len = 7;
    while (d[len - 1] == '0') {
        len--;
    }
    raw(o, d, len);
}

/* model._nearest_fraction: round(r * scale / 2**s) when that decimal reads back as the
 * float, else -1. */
static long long
nearest_fraction(unsigned long long r, unsigned long long scale, int s)
{
    unsigned __int128 f = (unsigned __int128)r * scale;
    unsigned __int128 one = 1;
    unsigned __int128 half = one << (s - 1);
    if ((f & ((one << s) - 1)) == half) {
        return -1;
    }
    unsigned __int128 cf = (f + half) >> s;
    __int128 d = (__int128)(cf << s) - (__int128)f;
    __int128 limit = (__int128)(scale / 2);
    return (-limit < d && d < limit) ? (long long)cf : -1;
}

static void
float_repr(Out *o, double x)
{
    char *s = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL) {
        o->failed = 1;
        return;
    }
    raw(o, s, (Py_ssize_t)strlen(s));
    PyMem_Free(s);
}

/* model._jsec_exact */
static void
jsec_exact(Out *o, double x)
{
    double w_d = floor(x);
    if (!(w_d >= 32768.0 && w_d < 8589934592.0)) {
        float_repr(o, x);
        return;
    }
    long long w = (long long)w_d;
    int bits = 16;
    while ((1LL << bits) <= w) {
        bits++;
    }
    int s = 53 - bits;
    unsigned long long r = (unsigned long long)(long long)(x * (double)(1LL << s)) & ((1ULL << s) - 1);
    long long cf = nearest_fraction(r, 1000000ULL, s);
    if (cf >= 0) {
        six_digits(o, w + cf / 1000000, cf % 1000000);
        return;
    }
    cf = nearest_fraction(r, 10000000ULL, s);
    if (cf >= 0) {
        ll(o, w + cf / 10000000);
        long long frac = cf % 10000000;
        char d[8];
        d[0] = '.';
        for (int k = 7; k >= 1; k--) {
            d[k] = (char)('0' + frac % 10);
            frac /= 10;
        }
        raw(o, d, 8);
        return;
    }
    float_repr(o, x);
}

/* model._jsec: repr(ns / 1e9) for an int ns, or null. */
static void
jsec(Out *o, PyObject *v)
{
    if (v == Py_None) {
        LIT(o, "null");
        return;
    }
    long long ns;
    if (as_ll(o, v, &ns) < 0) {
        return;
    }
    double x = (double)ns / 1e9;  /* int / float in Python: the int rounded to a double first */
    if (SEC_FAST_MIN <= ns && ns < SEC_FAST_MAX) {
        long long us = (ns + 500) / 1000;
        if ((double)us / 1e6 == x) {
            six_digits(o, us / 1000000, us % 1000000);
            return;
        }
        jsec_exact(o, x);
        return;
    }
    float_repr(o, x);
}

/* ---- the line ------------------------------------------------------------------------- */

/* [n,n,...] */
static void
int_list(Out *o, PyObject *v)
{
    if (!PyList_CheckExact(v)) {
        give_up(o);
        return;
    }
    LIT(o, "[");
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
        if (i) {
            LIT(o, ",");
        }
        integer(o, PyList_GET_ITEM(v, i));
    }
    LIT(o, "]");
}

/* {"k":"v",...} of a dict of str to str */
static void
str_dict(Out *o, PyObject *v)
{
    if (!PyDict_CheckExact(v)) {
        give_up(o);
        return;
    }
    LIT(o, "{");
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *x;
    while (PyDict_Next(v, &pos, &k, &x)) {
        if (i++) {
            LIT(o, ",");
        }
        jstring(o, k);
        LIT(o, ":");
        jstring(o, x);
    }
    LIT(o, "}");
}

/* A direction's pair: {"c2s":a,"s2c":b} */
static void
pair(Out *o, const char *key, PyObject *a, PyObject *b, void (*one)(Out *, PyObject *))
{
    raw(o, key, (Py_ssize_t)strlen(key));
    LIT(o, "{\"c2s\":");
    one(o, a);
    LIT(o, ",\"s2c\":");
    one(o, b);
    LIT(o, "}");
}

#define NFIELDS 26

static PyObject *
line(PyObject *Py_UNUSED(self), PyObject *t)
{
    if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != NFIELDS) {
        PyErr_SetString(PyExc_TypeError, "line: a tuple of 26 fields (model._stream_line_c)");
        return NULL;
    }
    PyObject **f = &PyTuple_GET_ITEM(t, 0);
    Out o;
    out_init(&o);
    LIT(&o, "\"stream\":");
    integer(&o, f[0]);
    LIT(&o, ",");
    verbatim(&o, f[1]);  /* "method":...,"service":...,"rpc":... */
    LIT(&o, ",\"grpc\":");
    boolean(&o, f[2]);
    LIT(&o, ",\"start\":");
    jsec(&o, f[3]);
    LIT(&o, ",\"end\":");
    jsec(&o, f[4]);
    LIT(&o, ",\"start_packet\":");
    integer(&o, f[5]);
    LIT(&o, ",\"end_packet\":");
    int_or_null(&o, f[6]);
    verbatim(&o, f[7]);  /* ,"state":...,"timeout":... */
    LIT(&o, ",\"deadline\":");
    jsec(&o, f[8]);
    verbatim(&o, f[9]);  /* ,"http_status":...,"late_frames_not_listed":... */
    pair(&o, ",\"frames\":", f[10], f[11], integer);
    pair(&o, ",\"data_bytes\":", f[12], f[13], integer);
    pair(&o, ",\"messages\":", f[14], f[15], int_or_null);
    pair(&o, ",\"message_bytes\":", f[16], f[17], integer);
    pair(&o, ",\"compressed_messages\":", f[18], f[19], integer);
    pair(&o, ",\"message_sizes\":", f[20], f[21], int_list);
    LIT(&o, ",\"headers_unknown\":");
    boolean(&o, f[22]);
    LIT(&o, ",\"metadata\":");
    str_dict(&o, f[23]);
    LIT(&o, ",\"flow_control_stalls\":");
    verbatim(&o, f[24]);
    verbatim(&o, f[25]);  /* the headers, when asked for */
    LIT(&o, "}");
    PyObject *result = out_text(&o);
    return result == NULL && o.failed == 2 ? Py_NewRef(Py_None) : result;
}

static PyObject *
jsec_py(PyObject *Py_UNUSED(self), PyObject *v)
{
    Out o;
    out_init(&o);
    jsec(&o, v);
    PyObject *result = out_text(&o);
    if (o.failed == 2) {
        PyErr_SetString(PyExc_TypeError, "jsec: an int of at most 63 bits, or None");
    }
    return result;
}

static PyMethodDef methods[] = {
    {"line", line, METH_O, "line(fields) -> a stream's JSON line after its \"conn\", or None (see model.py)"},
    {"jsec", jsec_py, METH_O, "jsec(ns) -> repr(ns / 1e9), or 'null' (for the tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_jsonline_c",
    .m_doc = "A stream's JSON line written in C (see model.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__jsonline_c(void)
{
    return PyModule_Create(&module);
}
