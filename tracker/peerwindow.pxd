# Cython declarations for the compiled build of peerwindow.py (setup.py compiles the .py;
# this file only types it). Lengths and offsets are C integers (bounded by the size of a
# bytearray); strings stay Python objects. Module constants are not declared here: a cdef
# global would vanish from the module's namespace.
cimport cython


@cython.locals(total=Py_ssize_t, need=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t,
               at=Py_ssize_t, out=bytes, whole=bytes, part=bytes)
cpdef bytes ring(tuple strings, Py_ssize_t w, Py_ssize_t k, Py_ssize_t asker, object rand,
                 Py_ssize_t join_max=*)


@cython.locals(i=Py_ssize_t, left=Py_ssize_t, parts=list)
cpdef bytes _window(tuple strings, Py_ssize_t start, Py_ssize_t need)
