# The C socket calls of the compiled UDP burst (tracker/udpburst.py cimports them through
# cython.cimports when compiled; the plain build never reads this file). Declarations of
# POSIX <sys/socket.h>, <netinet/in.h> and <arpa/inet.h>, as much of them as the burst uses.
from libc.stdint cimport uint8_t, uint16_t, uint32_t


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t

    cdef struct sockaddr:
        sa_family_t sa_family

    cdef struct sockaddr_storage:
        sa_family_t ss_family

    enum:
        AF_INET
        AF_INET6

    ssize_t recvfrom(int fd, void *buf, size_t n, int flags, sockaddr *addr,
                     socklen_t *addr_len)
    ssize_t sendto(int fd, const void *buf, size_t n, int flags, const sockaddr *addr,
                   socklen_t addr_len)


cdef extern from "<netinet/in.h>" nogil:
    cdef struct in_addr:
        uint32_t s_addr

    cdef struct in6_addr:
        uint8_t s6_addr[16]

    cdef struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr

    cdef struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id


cdef extern from "<arpa/inet.h>" nogil:
    uint16_t ntohs(uint16_t value)
