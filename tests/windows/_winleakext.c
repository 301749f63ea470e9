/* A small Windows C extension for the Python tests under Wine (tests/test_windows.py):
 * a malloc leak, a HeapCreate leak and a handle leak, each with its clean twin. Built with
 * mingw against the stable ABI by scripts/test-windows-python.sh. */
#define Py_LIMITED_API 0x03090000
#include <Python.h>
#include <stdlib.h>
#include <windows.h>

static void *volatile sink;

static PyObject *leak_malloc(PyObject *self, PyObject *unused) {
    char *p = malloc(100);
    if (p) p[0] = 1;
    sink = p; /* never freed */
    Py_RETURN_NONE;
}

static PyObject *clean_malloc(PyObject *self, PyObject *unused) {
    char *p = malloc(100);
    if (p) p[0] = 1;
    sink = p;
    free(p);
    Py_RETURN_NONE;
}

static PyObject *leak_heapcreate(PyObject *self, PyObject *unused) {
    sink = HeapCreate(0, 0, 0); /* never HeapDestroy'ed */
    Py_RETURN_NONE;
}

static PyObject *clean_heapcreate(PyObject *self, PyObject *unused) {
    HANDLE h = HeapCreate(0, 0, 0);
    if (h) HeapDestroy(h);
    Py_RETURN_NONE;
}

static PyObject *leak_handle(PyObject *self, PyObject *unused) {
    sink = CreateEventW(NULL, TRUE, FALSE, NULL); /* never closed */
    Py_RETURN_NONE;
}

static PyObject *clean_handle(PyObject *self, PyObject *unused) {
    HANDLE h = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (h) CloseHandle(h);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leak_malloc", leak_malloc, METH_NOARGS, "malloc(100), never freed"},
    {"clean_malloc", clean_malloc, METH_NOARGS, "malloc(100), freed"},
    {"leak_heapcreate", leak_heapcreate, METH_NOARGS, "HeapCreate, never destroyed"},
    {"clean_heapcreate", clean_heapcreate, METH_NOARGS, "HeapCreate, destroyed"},
    {"leak_handle", leak_handle, METH_NOARGS, "CreateEventW, never closed"},
    {"clean_handle", clean_handle, METH_NOARGS, "CreateEventW, closed"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_winleakext", NULL, -1, methods};

PyMODINIT_FUNC PyInit__winleakext(void) { return PyModule_Create(&module); }
