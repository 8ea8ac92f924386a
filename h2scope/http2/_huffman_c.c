/* The walk of HPACK's Huffman decoding machine (RFC 7541 Appendix B), in C.
 *
 * h2scope/http2/huffman.py walks the same machine in compiled Python and is the reference;
 * this is the same loop over the same table, which huffman.py hands in from hpack (nothing
 * of the code is duplicated here). Hand-written because it is the largest single cost
 * left where header values never repeat (W2, a unique traceparent and x-request-id per
 * call, as OpenTelemetry-instrumented services send): 88 M of the 598 M instructions of
 * W2-2MB's pipeline in compiled Python, where every emitted symbol became a Python int
 * appended to a list; 9 M here (the pipeline: 520 M). tests/test_hpack_fast.py holds the
 * two walks and hpack equal on every captured string, on random bytes and on every
 * truncation and bit flip of encoded strings.
 *
 * Bounds: the tables are checked to be 4096 bytes (256 states x 16 nibbles) and a state is
 * a byte, so every index is below 4096; a nibble emits at most one symbol, so the output
 * never exceeds twice the input.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* hpack.huffman_constants; huffman.py checks that hpack still uses these values. */
#define HUFFMAN_COMPLETE 1
#define HUFFMAN_EMIT_SYMBOL 2
#define HUFFMAN_FAIL 4
#define TABLE_SIZE 4096

static PyObject *
walk(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "walk(data, next_states, flags, symbols) takes 4 arguments");
        return NULL;
    }
    for (Py_ssize_t a = 0; a < 4; a++) {
        if (!PyBytes_Check(args[a])) {
            PyErr_SetString(PyExc_TypeError, "walk: every argument must be bytes");
            return NULL;
        }
    }
    for (Py_ssize_t a = 1; a < 4; a++) {
        if (PyBytes_GET_SIZE(args[a]) != TABLE_SIZE) {
            PyErr_SetString(PyExc_ValueError, "walk: the tables must be 4096 bytes each");
            return NULL;
        }
    }
    const unsigned char *in = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *next = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    const unsigned char *flags = (const unsigned char *)PyBytes_AS_STRING(args[2]);
    const unsigned char *symbols = (const unsigned char *)PyBytes_AS_STRING(args[3]);
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
    Py_ssize_t k = 0;
    unsigned int state = 0, f = 0, i;
    for (Py_ssize_t q = 0; q < 2 * n; q++) {
        /* Each byte's high nibble, then its low one, as hpack does. */
        unsigned int nibble = (q & 1) ? (in[q >> 1] & 0x0F) : (in[q >> 1] >> 4);
        i = state * 16 + nibble;
        f = flags[i];
        if (f & HUFFMAN_FAIL) {
            goto invalid;
        }
        if (f & HUFFMAN_EMIT_SYMBOL) {
            out[k++] = symbols[i];
        }
        state = next[i];
    }
    if (!(f & HUFFMAN_COMPLETE)) {
        goto invalid;
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)out, k);
    PyMem_Free(out);
    return result;
invalid:  /* an invalid or incomplete code: where hpack raises */
    PyMem_Free(out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"walk", (PyCFunction)(void (*)(void))walk, METH_FASTCALL,
     "walk(data, next_states, flags, symbols) -> bytes, or None where hpack raises"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_huffman_c",
    .m_doc = "HPACK's Huffman machine walked in C (see huffman.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__huffman_c(void)
{
    return PyModule_Create(&module);
}
