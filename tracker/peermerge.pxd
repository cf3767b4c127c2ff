# Cython declarations for the compiled build of peermerge.py (setup.py compiles the .py;
# this file only types it): the Swarms, Swarm and Peer arguments are the extension types of
# swarm.pxd, so their fields are struct members and Swarms' cpdef helpers C calls, as they
# were when these functions were Swarms' methods.
cimport cython

from tracker.swarm cimport Peer, Swarm, Swarms

# merge_upserts' view of the batch: its fields read and sliced in place (a slice of a char
# pointer is one PyBytes_FromStringAndSize; of a bytes object, a slice object and two ints)
ctypedef const unsigned char *raw_bytes


@cython.locals(n=Py_ssize_t, i=Py_ssize_t, addr=bytes, width=double, by_hash=dict,
               queue=dict, mine=bint, ih=bytes, swarm=Swarm, peer=Peer, due=list,
               ttl=Py_ssize_t, bucket=Py_ssize_t, op=Py_ssize_t,
               slot=Py_ssize_t, raw=raw_bytes)
cpdef bint merge_upserts(Swarms swarms, bytes batch, double base, tuple skip,
                         tuple skip_peers, bytes own, set demand)

cpdef bint in_any(tuple parts, object key)

cpdef Swarm _merged_into(Swarms swarms, bytes info_hash)

@cython.locals(peer=Peer, slot=Py_ssize_t, due=list)
cpdef bint _store(Swarms swarms, Swarm swarm, bytes addr, bytes peer_id, bint seeder,
                  Py_ssize_t bucket)
