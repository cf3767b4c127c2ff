# Cython declarations for the compiled build of udp_protocol.py (setup.py compiles the .py;
# this file only types it). Protocol numbers stay Python ints (they are 32 and 64 bits
# wide and go back into struct.pack); ConnectionIds becomes an extension type.
cimport cython


@cython.locals(fields=tuple)
cpdef object parse_request(object data)

@cython.locals(fields=tuple, body=Py_ssize_t)
cpdef tuple parse_fields(object data)

cpdef bytes render_announce(object transaction_id, object interval, object leechers,
                            object seeders, bytes peers)


cdef class ConnectionIds:
    cdef public double _offset
    cdef public object _keyed
    cdef public double _bucket
    cdef public dict _recent
    cdef public double _now
    cdef public object _now_bucket

    cpdef object _bucket_at(self, double now)

    cpdef object _id(self, bytes addr, object bucket)

    @cython.locals(hit=tuple)
    cpdef object issue(self, bytes addr, double now)

    @cython.locals(hit=tuple)
    cpdef bint valid(self, object connection_id, bytes addr, double now)

    cpdef _remember(self, bytes addr, object bucket, object cid)
