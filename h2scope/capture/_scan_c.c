/* The record loops of classic pcap and of pcapng's Enhanced Packet Blocks, and decode()'s
 * fast path, in C, a batch of records per call.
 *
 * h2scope/capture/pcap.py and pcapng.py (read_packets) and link.py (LinkDecoder.decode's
 * fast path, and fast_port_sum) are the reference: these are the same record loops and the
 * same conditions,
 * and anything the fast path does not take (another link type, IPv6, IP options,
 * fragments, damage) goes back to Python as the record's bytes, for decode()'s general
 * path. Hand-written because reading records and their headers was a fixed cost per packet
 * that compiled Python could not bring down further: on W1-2MB's pipeline, 34 M
 * instructions for the record loop (a generator resumed per record, its timestamp
 * multiplied through Python ints because mypyc's overflow check refuses a tagged epoch
 * second) and 27 M for decode(), of 422 M; and a --jobs worker paid the record loop for
 * every packet of the capture, the other worker's too. Here a record costs about 100
 * instructions and a skipped one no object at all (benchmarks/README.md has the numbers).
 * tests/test_scan.py holds this equal to the Python reader and decoder on every stored
 * capture, on damaged headers and on cut and corrupt files.
 *
 * scan(buf, pos, little, ns_per_unit, limit, linktype, number, parts, part)
 *   reads the records that lie whole in buf (bytes, or the file's mmap) from pos on (those with incl_len <= limit),
 *   numbering them after `number`, and stops after a record whose number is a multiple of
 *   4096 (the pipeline sweeps and reports progress there), or at the first record that is
 *   not whole in buf or is larger than limit (pcap.py reads that one through the source).
 *   Returns (pos, number, first_ts, last_ts, tcp, items):
 *     first_ts, last_ts  the first and last record's epoch nanoseconds (-1 if none was read),
 *     tcp                records the fast path took, this worker's or not,
 *     items              a list, in record order, of
 *       (number, ts_ns, src, sport, dst, dport, seq, ack, flags, window, payload)
 *         for a fast-path segment whose port sum modulo parts is part,
 *       (number, ts_ns, None, linktype, None, 0, 0, 0, 0, 0, data)
 *         for a record the fast path does not take.
 *
 * scan_ng(buf, pos, little, interfaces, number, parts, part): the same for pcapng (below).
 *
 * Bounds: every read of a record header is behind `blen - pos >= 16` (pcapng: 28, and the
 * block's length checked against what is left), every read of a packet behind the checks
 * the Python fast path makes (n >= off + 40, start <= ip_end <= n), and a batch holds at
 * most 4096 items.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define BATCH_MASK 0xFFF

/* IPv4 addresses repeat packet after packet: one bytes object per address, kept in a small
 * direct-mapped cache, so that the tracker's 4-tuple lookup hashes each address once (a
 * bytes object caches its hash) instead of every packet. */
#define ADDR_SLOTS 256
static PyObject *addr_obj[ADDR_SLOTS];
static uint32_t addr_key[ADDR_SLOTS];

static PyObject *
address(const unsigned char *p)
{
    uint32_t key = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    unsigned int slot = (key ^ key >> 8 ^ key >> 16 ^ key >> 24) & (ADDR_SLOTS - 1);
    PyObject *obj = addr_obj[slot];
    if (obj != NULL && addr_key[slot] == key) {
        Py_INCREF(obj);
        return obj;
    }
    obj = PyBytes_FromStringAndSize((const char *)p, 4);
    if (obj == NULL) {
        return NULL;
    }
    Py_XDECREF(addr_obj[slot]);
    Py_INCREF(obj);
    addr_obj[slot] = obj;
    addr_key[slot] = key;
    return obj;
}

static inline uint32_t
u32(const unsigned char *p, int little)
{
    if (little) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* An 11-tuple, stealing the references it is given; NULL (and every reference released) if
 * any is NULL. */
static PyObject *
item(PyObject *v[11])
{
    PyObject *t = NULL;
    for (int i = 0; i < 11; i++) {
        if (v[i] == NULL) {
            goto fail;
        }
    }
    t = PyTuple_New(11);
    if (t == NULL) {
        goto fail;
    }
    for (int i = 0; i < 11; i++) {
        PyTuple_SET_ITEM(t, i, v[i]);
    }
    return t;
fail:
    for (int i = 0; i < 11; i++) {
        Py_XDECREF(v[i]);
    }
    return NULL;
}

/* One record's packet: an item for `items` as the module comment says (or none, for another
 * worker's segment). 0, or -1 with an exception set. */
static int
emit(PyObject *items, const unsigned char *d, Py_ssize_t n, long linktype, long long number, long long ts,
     long parts, long part, long long *tcp)
{
    /* link.py's _FAST_OFFSETS: where the ethertype and the IPv4 header lie. */
    Py_ssize_t e, off;
    int fast = 1;
    switch (linktype) {
    case 1: e = 12; off = 14; break;     /* EN10MB */
    case 113: e = 14; off = 16; break;   /* LINUX_SLL */
    case 276: e = 0; off = 20; break;    /* LINUX_SLL2 */
    default: e = off = 0; fast = 0; break;
    }
    PyObject *it;
    if (fast && n >= off + 40 && d[e] == 0x08 && d[e + 1] == 0 && d[off] == 0x45 && d[off + 9] == 6
            && !(d[off + 6] & 0x3F) && d[off + 7] == 0) {
        Py_ssize_t t = off + 20;
        unsigned int doff = d[t + 12];
        Py_ssize_t total = (Py_ssize_t)d[off + 2] << 8 | d[off + 3];
        Py_ssize_t start = t + (Py_ssize_t)(doff >> 4) * 4;
        Py_ssize_t ip_end = total ? off + total : n;
        if (doff >= 0x50 && start <= ip_end && ip_end <= n) {
            (*tcp)++;
            long sport = (long)d[t] << 8 | d[t + 1];
            long dport = (long)d[t + 2] << 8 | d[t + 3];
            if (parts != 1 && (sport + dport) % parts != part) {
                return 0;  /* another worker's */
            }
            PyObject *v[11] = {
                PyLong_FromLongLong(number), PyLong_FromLongLong(ts),
                address(d + off + 12), PyLong_FromLong(sport),
                address(d + off + 16), PyLong_FromLong(dport),
                PyLong_FromUnsignedLong(u32(d + t + 4, 0)), PyLong_FromUnsignedLong(u32(d + t + 8, 0)),
                PyLong_FromLong(d[t + 13]), PyLong_FromLong((long)d[t + 14] << 8 | d[t + 15]),
                PyBytes_FromStringAndSize((const char *)d + start, ip_end - start),
            };
            it = item(v);
            goto append;
        }
    }
    Py_INCREF(Py_None);
    Py_INCREF(Py_None);
    PyObject *v[11] = {
        PyLong_FromLongLong(number), PyLong_FromLongLong(ts), Py_None, PyLong_FromLong(linktype), Py_None,
        PyLong_FromLong(0), PyLong_FromLong(0), PyLong_FromLong(0), PyLong_FromLong(0), PyLong_FromLong(0),
        PyBytes_FromStringAndSize((const char *)d, n),
    };
    it = item(v);
append:
    if (it == NULL) {
        return -1;
    }
    int rc = PyList_Append(items, it);
    Py_DECREF(it);
    return rc;
}

/* The capture's bytes: bytes, or the mmap of the file (reader.py maps regular files), read
 * in place. On success the caller releases `view`. */
static int
get_buffer(PyObject *buf, Py_buffer *view, Py_ssize_t pos, long long number, long parts, long part)
{
    if (PyErr_Occurred()) {
        return -1;
    }
    if (PyObject_GetBuffer(buf, view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "scan: buf must be bytes or a buffer of bytes");
        return -1;
    }
    if (pos < 0 || pos > view->len || parts < 1 || part < 0 || part >= parts || number < 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "scan: argument out of range");
        return -1;
    }
    return 0;
}

static PyObject *
scan(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "scan(buf, pos, little, ns_per_unit, limit, linktype, number, parts, part) takes 9 arguments");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    int little = PyObject_IsTrue(args[2]);
    long long ns_per_unit = PyLong_AsLongLong(args[3]);
    long long limit = PyLong_AsLongLong(args[4]);
    long linktype = PyLong_AsLong(args[5]);
    long long number = PyLong_AsLongLong(args[6]);
    long parts = PyLong_AsLong(args[7]);
    long part = PyLong_AsLong(args[8]);
    if ((ns_per_unit != 1 && ns_per_unit != 1000) || limit < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "scan: argument out of range");
        }
        return NULL;
    }
    Py_buffer view;
    if (get_buffer(args[0], &view, pos, number, parts, part) < 0) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t blen = view.len;

    PyObject *items = PyList_New(0);
    if (items == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    long long first_ts = -1, ts = -1, tcp = 0;
    while (blen - pos >= 16) {
        const unsigned char *h = buf + pos;
        uint32_t sec = u32(h, little), frac = u32(h + 4, little), incl = u32(h + 8, little);
        if ((long long)incl > limit || (long long)incl > (long long)(blen - pos - 16)) {
            break;  /* pcap.py reads this record through the source, or reports the damage */
        }
        pos += 16 + (Py_ssize_t)incl;
        number++;
        ts = (long long)sec * 1000000000LL + (long long)frac * ns_per_unit;
        if (first_ts < 0) {
            first_ts = ts;
        }
        if (emit(items, h + 16, (Py_ssize_t)incl, linktype, number, ts, parts, part, &tcp) < 0) {
            Py_DECREF(items);
            PyBuffer_Release(&view);
            return NULL;
        }
        if (!(number & BATCH_MASK)) {
            break;
        }
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nLLLLN", pos, number, first_ts, ts, tcp, items);
}

#define EPB 6
#define MAX_BLOCK (16 * 1024 * 1024)

/* One interface of a pcapng section as scan_ng reads it: (linktype, ns_per_unit, offset_ns),
 * or None for an interface whose timestamps are not a whole number of nanoseconds. 1 and the
 * values, 0 where the block is left to Python (None, or numbers out of range), -1 with an
 * exception set for what is not such an entry. */
static int
interface(PyObject *f, long *lt, long long *unit, long long *offset)
{
    if (f == Py_None) {
        return 0;
    }
    if (!PyTuple_Check(f) || PyTuple_GET_SIZE(f) != 3) {
        PyErr_SetString(PyExc_TypeError, "scan_ng: an interface is (linktype, ns_per_unit, offset_ns) or None");
        return -1;
    }
    int o1 = 0, o2 = 0, o3 = 0;
    long long l = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(f, 0), &o1);
    *unit = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(f, 1), &o2);
    *offset = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(f, 2), &o3);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (o1 || o2 || o3 || l < 0 || l > 0xFFFF || *unit < 1) {
        return 0;
    }
    *lt = (long)l;
    return 1;
}

/* scan_ng(buf, pos, little, interfaces, number, parts, part): the same for a pcapng section's
 * Enhanced Packet Blocks (pcapng.py's fast path and its conditions), where `interfaces` is
 * the section's list of interface entries (see interface() above), looked up per block: a
 * section may declare any number of interfaces, and the list grows between calls. It stops
 * at the first block that is not such an EPB lying whole in buf, whose interface is left to
 * Python, or whose timestamp would not fit 63 bits: pcapng.py reads that one. */
static PyObject *
scan_ng(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_ng(buf, pos, little, interfaces, number, parts, part) takes 7 arguments");
        return NULL;
    }
    if (!PyList_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "scan_ng: interfaces must be a list");
        return NULL;
    }
    PyObject *ifs = args[3];
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    int little = PyObject_IsTrue(args[2]);
    long long number = PyLong_AsLongLong(args[4]);
    long parts = PyLong_AsLong(args[5]);
    long part = PyLong_AsLong(args[6]);
    Py_buffer view;
    if (get_buffer(args[0], &view, pos, number, parts, part) < 0) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t blen = view.len;
    PyObject *items = PyList_New(0);
    if (items == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    long long first_ts = -1, ts = -1, tcp = 0;
    while (blen - pos >= 28 && u32(buf + pos, little) == EPB) {
        const unsigned char *b = buf + pos;
        uint32_t length = u32(b + 4, little), ifid = u32(b + 8, little), caplen = u32(b + 20, little);
        if (!(32 <= length && length <= MAX_BLOCK && !(length & 3) && (Py_ssize_t)ifid >= 0
              && (Py_ssize_t)ifid < PyList_GET_SIZE(ifs) && caplen <= length - 32
              && (Py_ssize_t)length <= blen - pos && u32(b + length - 4, little) == length)) {
            break;
        }
        long lt = 0;
        long long unit = 0, offset = 0;
        int known = interface(PyList_GET_ITEM(ifs, ifid), &lt, &unit, &offset);
        if (known < 0) {
            goto fail;
        }
        if (!known) {
            break;
        }
        uint64_t units = (uint64_t)u32(b + 12, little) << 32 | u32(b + 16, little);
        long long t;
        if (units > (uint64_t)INT64_MAX || __builtin_mul_overflow((long long)units, unit, &t)
                || __builtin_add_overflow(t, offset, &t) || t < 0) {
            break;  /* pcapng.py's integers are unbounded */
        }
        ts = t;
        pos += length;
        number++;
        if (first_ts < 0) {
            first_ts = ts;
        }
        if (emit(items, b + 28, (Py_ssize_t)caplen, lt, number, ts, parts, part, &tcp) < 0) {
            goto fail;
        }
        if (!(number & BATCH_MASK)) {
            break;
        }
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nLLLLN", pos, number, first_ts, ts, tcp, items);
fail:
    PyBuffer_Release(&view);
    Py_DECREF(items);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(buf, pos, little, ns_per_unit, limit, linktype, number, parts, part) -> "
     "(pos, number, first_ts, last_ts, tcp, items): the pcap records whole in buf, decoded"},
    {"scan_ng", (PyCFunction)(void (*)(void))scan_ng, METH_FASTCALL,
     "scan_ng(buf, pos, little, interfaces, number, parts, part) -> "
     "(pos, number, first_ts, last_ts, tcp, items): the same for a pcapng section's Enhanced Packet Blocks"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan_c", "pcap records and their Ethernet/IPv4/TCP headers in C (see pcap.py)",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__scan_c(void)
{
    return PyModule_Create(&module);
}
