"""The compiled core of fastgrad: Value, graph building, backward, no_grad.

Layout of this file:
  1. op math: each op's forward value and local derivative, side by side
  2. graph kernels (nogil): parents of a node, topological collection, sweep
  3. releasing a graph without recursion
  4. allocating nodes (with a cache of freed ones), building them, the Value type
  5. fused n-ary ops (sum, dot, logsumexp, cross-entropy, the fused neuron
     and layer) and grad mode (no_grad)
"""

cimport cython
from cpython.object cimport PyObject
from cpython.float cimport PyFloat_Check, PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_Check, PyLong_AsDouble
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.exc cimport PyErr_Occurred
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE
from libc.math cimport tanh, exp, log, log1p, pow, fabs, isnan, isinf, INFINITY
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

import numbers
import operator
import sys

cdef extern from "Python.h":
    # Raw reference counting on PyObject*, so kernels never build `object`
    # temporaries (Cython would add its own incref/decref around those).
    void incref "Py_INCREF"(PyObject*) noexcept nogil
    void decref "Py_DECREF"(PyObject*) noexcept
    Py_ssize_t refcnt "Py_REFCNT"(PyObject*) noexcept nogil
    PyObject** seq_items "PySequence_Fast_ITEMS"(object)


# ===========================================================================
# 1. Op math. For every op: the forward function (`*_f`) and the local
#    derivative(s) (`*_d`, or `*_da`/`*_db` for two operands), together.
#    Derivatives receive the inputs and the output y, so the backward sweep
#    needs nothing stored beyond the node itself. IEEE semantics throughout
#    (cdivision is on globally): log(0) = -inf, x/0 = inf, nothing raises.
# ===========================================================================

# --- a + b
cdef inline double add_f(double a, double b) noexcept nogil: return a + b
#     d/da = 1, d/db = 1 (inlined in the sweep)

# --- a - b
cdef inline double sub_f(double a, double b) noexcept nogil: return a - b
#     d/da = 1, d/db = -1

# --- a * b
cdef inline double mul_f(double a, double b) noexcept nogil: return a * b
#     d/da = b, d/db = a

# --- a / b
cdef inline double div_f(double a, double b) noexcept nogil: return a / b
cdef inline double div_da(double a, double b) noexcept nogil: return 1.0 / b
cdef inline double div_db(double a, double b) noexcept nogil: return -(a / b) / b  # b*b would overflow

# --- a ** b  (PyTorch's conventions: zero derivative for a zero exponent,
#     and for the exponent where the base is 0 and the exponent >= 0)
cdef inline double pow_f(double a, double b) noexcept nogil: return pow(a, b)
cdef inline double pow_da(double a, double b) noexcept nogil:
    return 0.0 if b == 0.0 else b * pow(a, b - 1.0)
cdef inline double pow_db(double a, double b, double y) noexcept nogil:
    return 0.0 if (a == 0.0 and b >= 0.0) else y * log(a)

# --- -a
cdef inline double neg_f(double a) noexcept nogil: return -a
#     d/da = -1

# --- relu(a) = max(a, 0); micrograd's form, so NaN passes through
cdef inline double relu_f(double a) noexcept nogil: return 0.0 if a < 0.0 else a
cdef inline double relu_d(double y) noexcept nogil: return 1.0 if y > 0.0 else 0.0

# --- tanh(a)
cdef inline double tanh_f(double a) noexcept nogil: return tanh(a)
cdef inline double tanh_d(double y) noexcept nogil: return 1.0 - y * y

# --- sigmoid(a), without overflow for large |a|
cdef inline double sigmoid_f(double a) noexcept nogil:
    cdef double e
    if a >= 0.0:
        return 1.0 / (1.0 + exp(-a))
    e = exp(a)
    return e / (1.0 + e)
cdef inline double sigmoid_d(double y) noexcept nogil: return y * (1.0 - y)

# --- exp(a)
cdef inline double exp_f(double a) noexcept nogil: return exp(a)
cdef inline double exp_d(double y) noexcept nogil: return y

# --- log(a)
cdef inline double log_f(double a) noexcept nogil: return log(a)
cdef inline double log_d(double a) noexcept nogil: return 1.0 / a

# --- |a|  (derivative 0 at 0, as PyTorch's sign)
cdef inline double abs_f(double a) noexcept nogil: return fabs(a)
cdef inline double abs_d(double a) noexcept nogil:
    if a > 0.0:
        return 1.0
    if a < 0.0:
        return -1.0
    return a * 0.0          # 0 for 0, NaN for NaN

# --- clamp(a, min=c) and clamp(a, max=c); the gradient passes where a is
#     inside the bound, the bound included (torch.clamp). NaN passes through.
cdef inline double clamplo_f(double a, double c) noexcept nogil: return c if a < c else a
cdef inline double clamplo_d(double a, double c) noexcept nogil: return 1.0 if a >= c else 0.0
cdef inline double clamphi_f(double a, double c) noexcept nogil: return c if a > c else a
cdef inline double clamphi_d(double a, double c) noexcept nogil: return 1.0 if a <= c else 0.0

# --- binary cross-entropy of a logit a against a target t in [0, 1]:
#     max(a, 0) - a*t + log(1 + exp(-|a|)), never overflowing
cdef inline double bcel_f(double a, double t) noexcept nogil:
    return (a if a > 0.0 else 0.0) - a * t + log1p(exp(-fabs(a)))
cdef inline double bcel_d(double a, double t) noexcept nogil: return sigmoid_f(a) - t

# --- binary cross-entropy of a probability p against a target t, as
#     PyTorch's BCELoss: each log bounded below by -100, and the derivative
#     (p - t) / max(p (1 - p), 1e-12), finite even where p is exactly 0 or 1
cdef inline double bcep_f(double p, double t) noexcept nogil:
    # p = 0 or 1 never reaches log (its term is the bound, -100)
    cdef double lp = log(p) if p > 0.0 else -100.0
    cdef double lq = log(1.0 - p) if p < 1.0 else -100.0
    if lp < -100.0:
        lp = -100.0
    if lq < -100.0:
        lq = -100.0
    return -(t * lp + (1.0 - t) * lq)
cdef inline double bcep_d(double p, double t) noexcept nogil:
    cdef double v = p * (1.0 - p)
    return (p - t) / (v if v > 1e-12 else 1e-12)

# --- sum of n terms: d/dk_i = 1
# --- dot of n pairs: d/dw_i = x_i, d/dx_i = w_i

# --- logsumexp of n terms, max-subtracted: d/dk_i = exp(k_i - y) = softmax_i
cdef double lse_f(PyObject** kids, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double m = -INFINITY, s = 0.0, v
    for i in range(n):
        v = node_of(kids[i]).data
        if v > m or isnan(v):
            m = v
            if isnan(v):
                return v
    if isinf(m):
        return m                       # all -inf, or some +inf
    for i in range(n):
        s += exp(node_of(kids[i]).data - m)
    return m + log(s)
cdef inline double lse_d(double k, double y) noexcept nogil: return exp(k - y)

# --- cross-entropy of logits against class t: logsumexp(k) - k_t;
#     d/dk_i = softmax_i - [i == t], softmax recomputed from the logits
cdef inline double ce_f(PyObject** kids, Py_ssize_t n, Py_ssize_t t) noexcept nogil:
    return lse_f(kids, n) - node_of(kids[t]).data

# --- the fused neuron's activation, and its derivative from the output y
cdef inline double act_f(unsigned int act, double z) noexcept nogil:
    if act == ACT_RELU:
        return relu_f(z)
    if act == ACT_TANH:
        return tanh_f(z)
    if act == ACT_SIGMOID:
        return sigmoid_f(z)
    return z
cdef inline double act_d(unsigned int act, double y) noexcept nogil:
    if act == ACT_RELU:
        return relu_d(y)
    if act == ACT_TANH:
        return tanh_d(y)
    if act == ACT_SIGMOID:
        return sigmoid_d(y)
    return 1.0


# ===========================================================================
# 2. Graph kernels. Plain C over Node structs; no Python inside.
# ===========================================================================

# NODE_OFFSET (declared in the .pxd) is set at import, at the end of this file.

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define fastgrad_prefetch(p) __builtin_prefetch((const void*)(p))
    #else
    #define fastgrad_prefetch(p) ((void)(p))
    #endif
    """
    # A hint to start loading memory that will be read soon; never faults.
    void prefetch "fastgrad_prefetch"(const void* p) noexcept nogil

cdef enum:
    PREFETCH_AHEAD = 8                # sweep: how many nodes ahead to prefetch

cdef inline Py_ssize_t n_parents(Node* n) noexcept nogil:
    """How many parent references the node holds."""
    cdef unsigned int op = n.op & OP_MASK
    if op == OP_LEAF:
        return 0
    if op <= OP_POW:
        return 2
    if op < OP_SUM:
        return 1
    if op == OP_DOT:
        return 2 * n.b.count
    if op >= OP_AFFINEC:
        return n.b.count + 1           # w..., b
    if op >= OP_AFFINE:
        return n.b.count + 2           # w..., b, pack
    return n.b.count                   # OP_SUM, OP_DOTC, OP_LSE, OP_CE, OP_PACK

cdef inline PyObject* parent(Node* n, Py_ssize_t i) noexcept nogil:
    if n.op >= OP_SUM:
        return n.a.kids[i]
    return n.a.obj if i == 0 else n.b.obj

cdef inline Py_ssize_t first_searched(Node* n) noexcept nogil:
    """Index of the first parent backward's search must look at: past the
    weights of a fused neuron whose weights are all leaves."""
    return n.b.count if n.op & OP_LEAF_WEIGHTS else 0


# Scratch buffers of backward(): 24 bytes per node of the largest graph seen,
# kept between calls. Freeing them would cost more than it saves: fresh pages
# for a 10**5-node pass cost several times the pass itself (measured).
cdef struct Frame:
    PyObject* obj       # a node being expanded by the depth-first search
    Py_ssize_t next     # index of its next parent to look at

cdef Frame* dfs_stack = NULL          # explicit DFS stack (no recursion)
cdef Py_ssize_t dfs_cap = 0           # its capacity, in frames
cdef PyObject** topo = NULL           # interior nodes in topological order
cdef Py_ssize_t topo_cap = 0          # its capacity, in entries
cdef unsigned int epoch = 0           # stamp of the current backward pass
cdef enum:
    KEEP_PENDING = 1 << 16            # release's pending stack is freed above this
    NODE_CACHE = 1 << 17              # freed Values kept for reuse (7 MiB at most)

cdef bint grow_stack(Py_ssize_t need) noexcept nogil:
    global dfs_stack, dfs_cap
    cdef Py_ssize_t cap = dfs_cap * 2 if dfs_cap else 1024
    while cap < need:
        cap *= 2
    cdef Frame* p = <Frame*>realloc(dfs_stack, cap * sizeof(Frame))
    if p == NULL:
        return False
    dfs_stack = p
    dfs_cap = cap
    return True

cdef bint grow_topo(Py_ssize_t need) noexcept nogil:
    global topo, topo_cap
    cdef Py_ssize_t cap = topo_cap * 2 if topo_cap else 1024
    while cap < need:
        cap *= 2
    cdef PyObject** p = <PyObject**>realloc(topo, cap * sizeof(PyObject*))
    if p == NULL:
        return False
    topo = p
    topo_cap = cap
    return True


cdef Py_ssize_t collect(PyObject* root, unsigned int stamp) noexcept nogil:
    """Write the interior nodes reachable from `root` into `topo`, parents
    before children (post-order of an iterative DFS), and zero their grads.

    Leaves are skipped: they have nothing to propagate and their gradients
    accumulate across passes. Returns the count, or -1 if out of memory.
    """
    cdef Py_ssize_t sp = 1, count = 0, np
    cdef Frame* top
    cdef Node* n
    cdef Node* pn
    cdef PyObject* p
    if dfs_cap < 1 and not grow_stack(1):
        return -1
    node_of(root).mark = stamp
    node_of(root).grad = 0.0
    dfs_stack[0].obj = root
    dfs_stack[0].next = first_searched(node_of(root))
    while sp > 0:
        top = &dfs_stack[sp - 1]
        n = node_of(top.obj)
        np = n_parents(n)
        if top.next == 0 and n.op <= OP_POW and n.op != OP_LEAF:
            # First visit of a binary node: start fetching the second parent
            # now, so its cache miss overlaps the walk into the first one.
            # (n-ary nodes are not prefetched: their parents are mostly
            # weights already in cache, and hundreds of prefetches stall.)
            prefetch(node_of(n.b.obj))
        while top.next < np:
            p = parent(n, top.next)
            top.next += 1
            pn = node_of(p)
            if pn.op != OP_LEAF and pn.mark != stamp:
                pn.mark = stamp
                pn.grad = 0.0
                if sp == dfs_cap and not grow_stack(sp + 1):
                    return -1
                dfs_stack[sp].obj = p
                dfs_stack[sp].next = first_searched(pn)
                sp += 1
                break
        else:
            if count == topo_cap and not grow_topo(count + 1):
                return -1
            topo[count] = top.obj
            count += 1
            sp -= 1
    return count


cdef void sweep(Py_ssize_t count) noexcept nogil:
    """Propagate gradients through `topo` from the root (last) backwards."""
    cdef Py_ssize_t i, k, m
    cdef Node* y
    cdef Node* a
    cdef Node* b
    cdef double g, lse
    cdef double* consts
    cdef PyObject** kids
    cdef PyObject** xs
    cdef unsigned int op
    for i in range(count - 1, -1, -1):
        if i >= PREFETCH_AHEAD:
            prefetch(node_of(topo[i - PREFETCH_AHEAD]))
        y = node_of(topo[i])
        g = y.grad
        op = y.op & OP_MASK
        if op <= OP_POW:                                   # binary
            a = node_of(y.a.obj)
            b = node_of(y.b.obj)
            if op == OP_ADD:
                a.grad += g
                b.grad += g
            elif op == OP_SUB:
                a.grad += g
                b.grad -= g
            elif op == OP_MUL:
                a.grad += g * b.data
                b.grad += g * a.data
            elif op == OP_DIV:
                a.grad += g * div_da(a.data, b.data)
                b.grad += g * div_db(a.data, b.data)
            else:  # OP_POW
                a.grad += g * pow_da(a.data, b.data)
                b.grad += g * pow_db(a.data, b.data, y.data)
        elif op < OP_SUM:                                  # one parent
            a = node_of(y.a.obj)
            if op == OP_ADDC:
                a.grad += g
            elif op == OP_MULC:
                a.grad += g * y.b.num
            elif op == OP_RSUBC or op == OP_NEG:
                a.grad -= g
            elif op == OP_DIVC:
                a.grad += g * div_da(a.data, y.b.num)
            elif op == OP_RDIVC:
                a.grad += g * div_db(y.b.num, a.data)
            elif op == OP_POWC:
                a.grad += g * pow_da(a.data, y.b.num)
            elif op == OP_RPOWC:
                a.grad += g * pow_db(y.b.num, a.data, y.data)
            elif op == OP_CLAMPLO:
                a.grad += g * clamplo_d(a.data, y.b.num)
            elif op == OP_CLAMPHI:
                a.grad += g * clamphi_d(a.data, y.b.num)
            elif op == OP_BCEL:
                a.grad += g * bcel_d(a.data, y.b.num)
            elif op == OP_BCEP:
                a.grad += g * bcep_d(a.data, y.b.num)
            elif op == OP_RELU:
                a.grad += g * relu_d(y.data)
            elif op == OP_TANH:
                a.grad += g * tanh_d(y.data)
            elif op == OP_SIGMOID:
                a.grad += g * sigmoid_d(y.data)
            elif op == OP_EXP:
                a.grad += g * exp_d(y.data)
            elif op == OP_LOG:
                a.grad += g * log_d(a.data)
            elif op == OP_ABS:
                a.grad += g * abs_d(a.data)
        else:                                              # n-ary
            kids = y.a.kids
            m = y.b.count
            if op == OP_SUM:
                for k in range(m):
                    node_of(kids[k]).grad += g
            elif op == OP_DOT:
                for k in range(m):
                    a = node_of(kids[k])
                    b = node_of(kids[m + k])
                    a.grad += g * b.data
                    b.grad += g * a.data
            elif op == OP_DOTC:
                consts = <double*>(kids + m)
                for k in range(m):
                    node_of(kids[k]).grad += g * consts[k]
            elif op == OP_LSE:
                for k in range(m):
                    a = node_of(kids[k])
                    a.grad += g * lse_d(a.data, y.data)
            elif op == OP_CE:
                lse = lse_f(kids, m)
                for k in range(m):
                    a = node_of(kids[k])
                    a.grad += g * lse_d(a.data, lse)
                node_of(kids[(<Py_ssize_t*>(kids + m))[0]]).grad -= g
            elif op >= OP_AFFINEC:
                g = g * act_d(op - OP_AFFINEC, y.data)
                consts = <double*>(kids + m + 1)
                for k in range(m):
                    node_of(kids[k]).grad += g * consts[k]
                node_of(kids[m]).grad += g
            elif op >= OP_AFFINE:
                g = g * act_d(op - OP_AFFINE, y.data)
                xs = node_of(kids[m + 1]).a.kids          # the pack's inputs
                for k in range(m):
                    a = node_of(kids[k])
                    b = node_of(xs[k])
                    a.grad += g * b.data
                    b.grad += g * a.data
                node_of(kids[m]).grad += g
            # OP_PACK: nothing; its consumers write into its inputs directly


cdef int run_backward(Value root, double seed) except -1:
    global epoch
    cdef Py_ssize_t count
    if root.n.op == OP_LEAF:
        root.n.grad += seed
        return 0
    epoch += 1
    if epoch == 0:          # wrapped after 2**32 passes; 0 is the "never" stamp
        epoch = 1
    count = collect(<PyObject*>root, epoch)
    if count < 0:
        raise MemoryError("backward(): out of memory while ordering the graph")
    root.n.grad = seed
    sweep(count)
    return 0


# ===========================================================================
# 3. Releasing a graph. Dropping the root of a 10**6-deep chain must not
#    recurse through 10**6 deallocators: a node whose parent would die with
#    it pushes that parent on a pending stack, and the outermost dealloc
#    drains the stack in a loop (CPython's trashcan idea, without GC).
# ===========================================================================

cdef PyObject** pending = NULL        # parents waiting for their last decref
cdef Py_ssize_t pending_len = 0       # entries in use
cdef Py_ssize_t pending_cap = 0       # capacity, in entries
cdef bint draining = False            # a drain loop is running further up

cdef inline void drop(PyObject* p) noexcept:
    global pending, pending_cap, pending_len
    cdef PyObject** grown
    cdef Py_ssize_t cap
    if refcnt(p) > 1:
        decref(p)                      # someone else keeps it alive
        return
    if pending_len == pending_cap:
        cap = pending_cap * 2 if pending_cap else 256
        grown = <PyObject**>realloc(pending, cap * sizeof(PyObject*))
        if grown == NULL:              # out of memory: recurse rather than leak
            decref(p)
            return
        pending = grown
        pending_cap = cap
    pending[pending_len] = p
    pending_len += 1

cdef void release_parents(Node* n) noexcept:
    global draining, pending, pending_cap, pending_len
    cdef unsigned int op = n.op
    cdef Py_ssize_t k, m
    cdef PyObject** kids
    if op == OP_LEAF:
        return
    m = n_parents(n)
    n.op = OP_LEAF
    if op >= OP_SUM:
        kids = n.a.kids
        for k in range(m):
            drop(kids[k])
        PyMem_Free(kids)
    else:
        drop(n.a.obj)
        if op <= OP_POW:
            drop(n.b.obj)
    if draining:
        return
    draining = True
    while pending_len > 0:
        pending_len -= 1
        decref(pending[pending_len])   # may push that node's parents
    draining = False
    if pending_cap > KEEP_PENDING:
        free(pending)
        pending = NULL
        pending_cap = 0


# ===========================================================================
# 4. Building nodes, and the Value type.
# ===========================================================================

# --- allocation. Values are made and freed here, not by Cython's tp_new and
# tp_dealloc: no argument tuple, no exception save/restore around a
# __dealloc__, and a cache of freed nodes that the next graph reuses (a
# training step frees a graph and builds one of the same size; without the
# cache the allocator hands whole arenas back to the OS and takes page
# faults to get them again).

cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        Py_ssize_t tp_basicsize
        unsigned long tp_flags
        void (*tp_dealloc)(PyObject*)
    void* PyObject_Malloc(size_t) nogil
    void PyObject_Free(void*) nogil
    PyObject* PyObject_Init(PyObject*, PyTypeObject*)
    unsigned long Py_TPFLAGS_HEAPTYPE

cdef extern from *:
    """
    /* Hand a new reference held in a PyObject* to Cython as an owned object. */
    static CYTHON_INLINE PyObject* fastgrad_steal(PyObject* o) { return o; }
    """
    object steal "fastgrad_steal"(PyObject* o)

cdef PyTypeObject* value_type = <PyTypeObject*>Value   # set up at import
cdef size_t value_size = 0                            # its tp_basicsize
cdef PyObject** node_cache = NULL                      # freed Values kept for reuse
cdef Py_ssize_t cache_len = 0                          # entries in use

cdef inline Value new_value():
    """A zeroed Value (op LEAF, data 0, grad 0) with one reference."""
    global cache_len
    cdef PyObject* o
    cdef Node* n
    if cache_len > 0:
        cache_len -= 1
        o = node_cache[cache_len]
    else:
        o = <PyObject*>PyObject_Malloc(value_size)
        if o == NULL:
            raise MemoryError()
    n = node_of(o)
    n.grad = 0.0
    n.a.obj = NULL
    n.b.obj = NULL
    n.op = OP_LEAF
    n.mark = 0
    PyObject_Init(o, value_type)
    return <Value>steal(o)

cdef void value_dealloc(PyObject* o) noexcept:
    """tp_dealloc of Value: release the parents (without recursion), then
    keep the memory in the cache or give it back."""
    global cache_len
    release_parents(node_of(o))
    if cache_len < NODE_CACHE:
        node_cache[cache_len] = o
        cache_len += 1
    else:
        PyObject_Free(o)
    if value_type.tp_flags & Py_TPFLAGS_HEAPTYPE:
        decref(<PyObject*>value_type)

def empty_cache():
    """Give back the memory fastgrad keeps for reuse: freed Values (at most
    2**17 of them, about 7 MiB) and backward()'s scratch buffers (24 bytes
    per node of the largest graph back-propagated). Like
    ``torch.cuda.empty_cache()``, it is never needed for correctness; it
    returns memory to the allocator after an unusually large graph.
    Returns the number of bytes released."""
    global cache_len, dfs_stack, dfs_cap, topo, topo_cap
    cdef Py_ssize_t released = cache_len * value_size
    while cache_len > 0:
        cache_len -= 1
        PyObject_Free(node_cache[cache_len])
    released += dfs_cap * sizeof(Frame) + topo_cap * sizeof(PyObject*)
    free(dfs_stack)
    free(topo)
    dfs_stack = NULL
    topo = NULL
    dfs_cap = topo_cap = 0
    return released


def cache_limit_bytes():
    """The most memory the freed-Value cache can hold, in bytes."""
    return NODE_CACHE * value_size


cdef int setup_allocation() except -1:
    global value_size, node_cache
    value_size = value_type.tp_basicsize
    node_cache = <PyObject**>malloc(NODE_CACHE * sizeof(PyObject*))
    if node_cache == NULL:
        raise MemoryError()
    value_type.tp_dealloc = value_dealloc
    return 0


# --- grad mode, per thread (as in PyTorch). A thread's mode lives in a
# thread-specific slot (NULL: recording, the default); `threads_without_grad`
# counts the threads whose mode is off, so while it is 0 -- always, outside
# no_grad() -- asking costs one load.

from cpython.pythread cimport PyThread_tss_create, PyThread_tss_get, PyThread_tss_set

cdef Py_tss_t mode_key                        # per-thread slot: NULL = recording
cdef Py_ssize_t threads_without_grad = 0      # threads whose slot says "off"

cdef inline bint grad_on() noexcept:
    """Does the current thread record the graph?"""
    if threads_without_grad == 0:
        return True
    return PyThread_tss_get(&mode_key) == NULL

cdef int set_grad_mode(bint enabled) except -1:
    """Set the current thread's mode."""
    global threads_without_grad
    cdef bint was = PyThread_tss_get(&mode_key) == NULL
    if was == enabled:
        return 0
    if PyThread_tss_set(&mode_key, NULL if enabled else <void*>&mode_key) != 0:
        raise MemoryError("cannot store the grad mode of this thread")
    threads_without_grad += -1 if enabled else 1
    return 0

_Real = numbers.Real

cdef int slow_number(object x, double* out) except -1:
    """Numbers other than int/float: numpy scalars, Fraction, ... (0 if not)."""
    if isinstance(x, Value):
        return 0
    if isinstance(x, _Real):
        out[0] = float(x)
        return 1
    np = sys.modules.get("numpy")     # numpy's bool_ is not a numbers.Real
    if np is not None and isinstance(x, np.bool_):
        out[0] = 1.0 if x else 0.0
        return 1
    return 0

cdef inline int as_number(object x, double* out) except -1:
    """Store float(x) in out and return 1 if x is a real number, else 0."""
    if PyFloat_Check(x):
        out[0] = PyFloat_AS_DOUBLE(x)
        return 1
    if PyLong_Check(x):
        out[0] = PyLong_AsDouble(x)    # OverflowError for ints beyond float
        if out[0] == -1.0 and PyErr_Occurred():
            return -1
        return 1
    return slow_number(x, out)

cdef double to_double(object x, str what, Py_ssize_t index=-1) except? -1.0:
    """float(x) for a real number; else a TypeError naming `what` (and
    `[index]` when index >= 0; the message is only built on failure)."""
    cdef double v
    if as_number(x, &v):
        return v
    if index >= 0:
        what = f"{what}[{index}]"
    raise TypeError(
        f"{what} must be a real number (int, float, bool or numpy scalar), "
        f"got {type(x).__name__}: {x!r}")


cdef inline Value new_leaf(double data):
    cdef Value v = new_value()
    v.n.data = data
    return v

cdef inline Value unary(Value x, double y, unsigned int op):
    cdef Value out = new_value()
    out.n.data = y
    if grad_on():
        out.n.op = op
        incref(<PyObject*>x)
        out.n.a.obj = <PyObject*>x
    return out

cdef inline Value with_const(Value x, double c, double y, unsigned int op):
    cdef Value out = new_value()
    out.n.data = y
    if grad_on():
        out.n.op = op
        incref(<PyObject*>x)
        out.n.a.obj = <PyObject*>x
        out.n.b.num = c
    return out

cdef inline Value binary(Value x, Value z, double y, unsigned int op):
    cdef Value out = new_value()
    out.n.data = y
    if grad_on():
        out.n.op = op
        incref(<PyObject*>x)
        incref(<PyObject*>z)
        out.n.a.obj = <PyObject*>x
        out.n.b.obj = <PyObject*>z
    return out


_OP_NAMES = {
    OP_LEAF: "", OP_ADD: "+", OP_SUB: "-", OP_MUL: "*", OP_DIV: "/",
    OP_POW: "**", OP_ADDC: "+", OP_MULC: "*", OP_RSUBC: "-", OP_DIVC: "/",
    OP_RDIVC: "/", OP_POWC: "**", OP_RPOWC: "**", OP_NEG: "neg",
    OP_RELU: "ReLU", OP_TANH: "tanh", OP_SIGMOID: "sigmoid", OP_EXP: "exp",
    OP_LOG: "log", OP_ABS: "abs", OP_CLAMPLO: "clamp", OP_CLAMPHI: "clamp",
    OP_BCEL: "bce_with_logits", OP_BCEP: "bce", OP_SUM: "sum", OP_DOT: "dot", OP_DOTC: "dot",
    OP_LSE: "logsumexp", OP_CE: "cross_entropy_with_logits", OP_PACK: "pack",
    OP_AFFINE: "dot", OP_AFFINE_RELU: "ReLU(dot)", OP_AFFINE_TANH: "tanh(dot)",
    OP_AFFINE_SIGMOID: "sigmoid(dot)", OP_AFFINEC: "dot",
    OP_AFFINEC_RELU: "ReLU(dot)", OP_AFFINEC_TANH: "tanh(dot)",
    OP_AFFINEC_SIGMOID: "sigmoid(dot)",
}


def _number_repr(double c):
    return repr(int(c)) if c.is_integer() else repr(c)


@cython.final
@cython.no_gc
cdef class Value:
    """A scalar in a computation graph: a number and its gradient.

    ``Value(x)`` takes an int, float, bool or numpy scalar. Arithmetic with
    other Values or numbers builds the graph; ``backward()`` fills ``.grad``
    of every Value the result depends on.

    >>> a = Value(2.0); b = Value(-3.0)
    >>> c = (a * b + 1).tanh()
    >>> c.backward()
    """

    # numpy must hand mixed operations back to Value's reflected operators
    # (np.float64(2) * v is a Value), not turn the Value into an array.
    __array_ufunc__ = None

    def __init__(self, data):
        self.n.data = to_double(data, "Value(data)")

    # -- state --------------------------------------------------------------

    @property
    def data(self):
        """The forward value, as a Python float (writable)."""
        return self.n.data

    @data.setter
    def data(self, value):
        self.n.data = to_double(value, "Value.data")

    @property
    def grad(self):
        """d(root)/d(self) from the last backward() (writable)."""
        return self.n.grad

    @grad.setter
    def grad(self, value):
        self.n.grad = to_double(value, "Value.grad")

    @property
    def is_leaf(self):
        """True for a Value with no parents (made by Value(x) or under no_grad)."""
        return self.n.op == OP_LEAF

    @property
    def _op(self):
        """The op that made this Value, as micrograd spells it ('' for a leaf)."""
        if self.n.op == OP_POWC:
            return "**" + _number_repr(self.n.b.num)
        return _OP_NAMES[self.n.op & OP_MASK]

    @property
    def _prev(self):
        """The set of parents (micrograd's name). Number operands appear as
        fresh leaf Values, the way micrograd wraps them."""
        cdef Node* n = &self.n
        cdef Node* pack
        cdef Py_ssize_t k, m
        cdef double* consts
        cdef unsigned int op = n.op & OP_MASK
        out = set()
        if op == OP_LEAF:
            return out
        if OP_AFFINE <= op < OP_AFFINEC:              # w..., b, and the pack's inputs
            m = n.b.count
            for k in range(m + 1):
                out.add(<object>n.a.kids[k])
            pack = node_of(n.a.kids[m + 1])
            for k in range(m):
                out.add(<object>pack.a.kids[k])
            return out
        if op >= OP_SUM:
            for k in range(n_parents(n)):
                out.add(<object>n.a.kids[k])
            m = n.b.count
            consts = NULL
            if op == OP_DOTC:
                consts = <double*>(n.a.kids + m)
            elif op >= OP_AFFINEC:
                consts = <double*>(n.a.kids + m + 1)
            if consts != NULL:
                for k in range(m):
                    out.add(new_leaf(consts[k]))
            return out
        out.add(<object>n.a.obj)
        if op <= OP_POW:
            out.add(<object>n.b.obj)
        elif op < OP_NEG and op != OP_POWC:    # micrograd: a ** 2 has parents {a}
            out.add(new_leaf(n.b.num))
        return out

    def item(self):
        """The forward value as a Python float (PyTorch's spelling)."""
        return self.n.data

    def __float__(self):
        return self.n.data

    def __repr__(self):
        return f"Value(data={self.n.data!r}, grad={self.n.grad!r})"

    def __reduce__(self):
        if self.n.op != OP_LEAF:
            raise TypeError(
                "cannot pickle or copy a non-leaf Value (it would lose its "
                "graph); copy leaf Values, or use .data")
        return (_leaf, (self.n.data, self.n.grad))

    # -- arithmetic ---------------------------------------------------------

    def __add__(self, other):
        cdef double c
        if type(other) is Value:
            return binary(self, <Value>other, add_f(self.n.data, (<Value>other).n.data), OP_ADD)
        if not as_number(other, &c):
            return NotImplemented
        return with_const(self, c, add_f(self.n.data, c), OP_ADDC)

    def __radd__(self, other):
        cdef double c
        if not as_number(other, &c):
            return NotImplemented
        return with_const(self, c, add_f(c, self.n.data), OP_ADDC)

    def __sub__(self, other):
        cdef double c
        if type(other) is Value:
            return binary(self, <Value>other, sub_f(self.n.data, (<Value>other).n.data), OP_SUB)
        if not as_number(other, &c):
            return NotImplemented
        return with_const(self, -c, add_f(self.n.data, -c), OP_ADDC)

    def __rsub__(self, other):
        cdef double c
        if not as_number(other, &c):
            return NotImplemented
        return with_const(self, c, sub_f(c, self.n.data), OP_RSUBC)

    def __mul__(self, other):
        cdef double c
        if type(other) is Value:
            return binary(self, <Value>other, mul_f(self.n.data, (<Value>other).n.data), OP_MUL)
        if not as_number(other, &c):
            return NotImplemented
        return with_const(self, c, mul_f(self.n.data, c), OP_MULC)

    def __rmul__(self, other):
        cdef double c
        if not as_number(other, &c):
            return NotImplemented
        return with_const(self, c, mul_f(c, self.n.data), OP_MULC)

    def __truediv__(self, other):
        cdef double c
        if type(other) is Value:
            return binary(self, <Value>other, div_f(self.n.data, (<Value>other).n.data), OP_DIV)
        if not as_number(other, &c):
            return NotImplemented
        return with_const(self, c, div_f(self.n.data, c), OP_DIVC)

    def __rtruediv__(self, other):
        cdef double c
        if not as_number(other, &c):
            return NotImplemented
        return with_const(self, c, div_f(c, self.n.data), OP_RDIVC)

    def __pow__(self, other, mod):
        cdef double c
        if mod is not None:
            return NotImplemented
        if type(other) is Value:
            return binary(self, <Value>other, pow_f(self.n.data, (<Value>other).n.data), OP_POW)
        if not as_number(other, &c):
            return NotImplemented
        return with_const(self, c, pow_f(self.n.data, c), OP_POWC)

    def __rpow__(self, other, mod):
        cdef double c
        if mod is not None or not as_number(other, &c):
            return NotImplemented
        return with_const(self, c, pow_f(c, self.n.data), OP_RPOWC)

    def __neg__(self):
        return unary(self, neg_f(self.n.data), OP_NEG)

    def __pos__(self):
        return self

    def __abs__(self):
        return unary(self, abs_f(self.n.data), OP_ABS)

    # -- functions ----------------------------------------------------------

    def relu(self):
        """max(x, 0). The derivative at 0 is 0, as in micrograd and PyTorch."""
        return unary(self, relu_f(self.n.data), OP_RELU)

    def tanh(self):
        """Hyperbolic tangent."""
        return unary(self, tanh_f(self.n.data), OP_TANH)

    def sigmoid(self):
        """1 / (1 + exp(-x)), computed without overflow."""
        return unary(self, sigmoid_f(self.n.data), OP_SIGMOID)

    def exp(self):
        """e ** x."""
        return unary(self, exp_f(self.n.data), OP_EXP)

    def log(self):
        """Natural logarithm; log(0) is -inf and log(x<0) is nan, as in IEEE."""
        return unary(self, log_f(self.n.data), OP_LOG)

    def abs(self):
        """|x|; the derivative at 0 is 0."""
        return unary(self, abs_f(self.n.data), OP_ABS)

    def clamp(self, min=None, max=None):
        """Limit to [min, max] (either may be None), as ``torch.clamp``: the
        gradient is 1 inside the bounds, bounds included, and 0 outside."""
        cdef double c
        if min is None and max is None:
            raise ValueError("clamp() needs at least one of min and max, got neither")
        out = self
        if min is not None:
            c = to_double(min, "clamp(min)")
            out = with_const(out, c, clamplo_f(out.n.data, c), OP_CLAMPLO)
        if max is not None:
            c = to_double(max, "clamp(max)")
            out = with_const(out, c, clamphi_f(out.n.data, c), OP_CLAMPHI)
        return out

    # -- backward -----------------------------------------------------------

    def backward(self, gradient=1.0):
        """Back-propagate from this Value, filling ``.grad`` of all it depends on.

        Leaf gradients accumulate across calls (call ``zero_grad()`` between
        steps); gradients of intermediate Values are recomputed by each call.
        ``gradient`` seeds d(root)/d(self), 1.0 by default.
        """
        run_backward(self, to_double(gradient, "backward(gradient)"))


def _leaf(double data, double grad=0.0):
    """Rebuild a leaf Value (used by pickle and copy)."""
    cdef Value v = new_leaf(data)
    v.n.grad = grad
    return v


# ===========================================================================
# 5. Fused n-ary ops and grad mode.
# ===========================================================================

cdef bint plain_items(object seq):
    """True if converting every item of a PySequence_Fast result is free of
    Python code: each is a Value, a float or an int."""
    cdef Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq)
    cdef PyObject** items = seq_items(seq)
    cdef PyObject* o
    for i in range(n):
        o = items[i]
        if type(<object>o) is not Value and not PyFloat_Check(<object>o) \
                and not PyLong_Check(<object>o):
            return False
    return True


cdef object stable_items(object values, const char* message):
    """PySequence_Fast(values), copied into a tuple when converting an item
    could run Python code (anything but a Value, float or int): that code
    could change a list whose item pointers we are holding."""
    seq = PySequence_Fast(values, message)
    return seq if plain_items(seq) else tuple(seq)


cdef Value as_value(object x, str where, Py_ssize_t index=-1):
    """x itself if it is a Value, a constant leaf if it is a number, else a
    TypeError naming `where` (and `[index]`; built only on failure)."""
    cdef double c
    if type(x) is Value:
        return <Value>x
    if as_number(x, &c):
        return new_leaf(c)
    if index >= 0:
        where = f"{where}[{index}]"
    raise TypeError(
        f"{where} must be a Value or a real number, got {type(x).__name__}: {x!r}")

cdef Value nary(double y, unsigned int op, PyObject** kids, Py_ssize_t count):
    """A node that takes ownership of the kids array (already increfed)."""
    cdef Value out = new_value()
    out.n.data = y
    out.n.op = op
    out.n.a.kids = kids
    out.n.b.count = count
    return out


def sum(values, start=0):
    """Sum of Values (and numbers) as ONE node with many parents.

    Same signature, value and gradient as Python's ``sum(values, start)``,
    but one node: faster to build and to back-propagate than a chain of +.
    """
    cdef double s = 0.0
    if type(start) is Value:
        values = [start, *values]
    else:
        s = to_double(start, "fastgrad.sum(start)")
    seq = stable_items(values, "fastgrad.sum() expects an iterable of Values")
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), i = 0, j
    cdef PyObject** items = seq_items(seq)
    cdef PyObject** kids
    cdef object v
    if not grad_on() or n == 0:
        for i in range(n):
            s += as_value(<object>items[i], "fastgrad.sum(): values", i).n.data
        return new_leaf(s)
    kids = <PyObject**>PyMem_Malloc(n * sizeof(PyObject*))
    if kids == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            v = as_value(<object>items[i], "fastgrad.sum(): values", i)
            incref(<PyObject*>v)
            kids[i] = <PyObject*>v
            s += (<Value>v).n.data
    except BaseException:
        for j in range(i):
            decref(kids[j])
        PyMem_Free(kids)
        raise
    return nary(s, OP_SUM, kids, n)


def dot(ws, xs):
    """sum(w * x for w, x in zip(ws, xs)) as ONE node with many parents.

    Either side may hold Values or numbers. A neuron built on ``dot`` is a
    single node, so building and back-propagating it is one C loop.
    """
    wseq = PySequence_Fast(ws, "fastgrad.dot() expects two sequences")
    xseq = PySequence_Fast(xs, "fastgrad.dot() expects two sequences")
    if not (plain_items(wseq) and plain_items(xseq)):
        # converting an item of either side may run Python code, which could
        # change the other side's list too: hold both as private tuples
        wseq = tuple(wseq)
        xseq = tuple(xseq)
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(wseq), i
    if PySequence_Fast_GET_SIZE(xseq) != n:
        raise ValueError(
            f"fastgrad.dot(): sequences differ in length "
            f"({n} and {PySequence_Fast_GET_SIZE(xseq)})")
    cdef PyObject** wi = seq_items(wseq)
    cdef PyObject** xi = seq_items(xseq)
    cdef bint w_vals = True, x_vals = True, x_nums = True, w_nums = True
    cdef double s = 0.0, c
    cdef Value w, x
    for i in range(n):
        if type(<object>wi[i]) is Value:
            w_nums = False
        else:
            w_vals = False
        if type(<object>xi[i]) is Value:
            x_nums = False
        else:
            x_vals = False
    if not grad_on() or n == 0 or (w_nums and x_nums):
        for i in range(n):
            s += (as_value(<object>wi[i], "fastgrad.dot(): ws", i).n.data
                  * as_value(<object>xi[i], "fastgrad.dot(): xs", i).n.data)
        return new_leaf(s)
    if w_vals and x_nums:
        return dot_const(wi, xi, n, "fastgrad.dot(): xs")
    if x_vals and w_nums:
        return dot_const(xi, wi, n, "fastgrad.dot(): ws")
    # Values on both sides (numbers mixed in become constant leaves)
    cdef PyObject** kids = <PyObject**>PyMem_Malloc(2 * n * sizeof(PyObject*))
    if kids == NULL:
        raise MemoryError()
    cdef Py_ssize_t done = 0
    try:
        for i in range(n):
            w = as_value(<object>wi[i], "fastgrad.dot(): ws", i)
            x = as_value(<object>xi[i], "fastgrad.dot(): xs", i)
            incref(<PyObject*>w)
            incref(<PyObject*>x)
            kids[i] = <PyObject*>w
            kids[n + i] = <PyObject*>x
            done += 1
            s += w.n.data * x.n.data
    except BaseException:
        for i in range(done):
            decref(kids[i])
            decref(kids[n + i])
        PyMem_Free(kids)
        raise
    return nary(s, OP_DOT, kids, n)


cdef Value dot_const(PyObject** vals, PyObject** nums, Py_ssize_t n, str side):
    """dot of n Values with n numbers: the numbers are stored in the node."""
    cdef PyObject** kids = <PyObject**>PyMem_Malloc(2 * n * sizeof(PyObject*))
    if kids == NULL:
        raise MemoryError()
    cdef double* consts = <double*>(kids + n)
    cdef double s = 0.0
    cdef Py_ssize_t i
    try:
        for i in range(n):
            consts[i] = to_double(<object>nums[i], side, i)
    except BaseException:
        PyMem_Free(kids)
        raise
    for i in range(n):
        incref(vals[i])
        kids[i] = vals[i]
        s += (<Value>vals[i]).n.data * consts[i]
    return nary(s, OP_DOTC, kids, n)


def logsumexp(values):
    """log(sum(exp(v) for v in values)) as ONE node, computed stably
    (max-subtracted); its gradient is the softmax of the values."""
    seq = stable_items(values, "logsumexp() expects a sequence of Values")
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq)
    cdef PyObject** kids = values_array(seq, n, 0, "logsumexp()")
    cdef double y = lse_f(kids, n)
    return finish_nary(y, OP_LSE, kids, n, n)


def cross_entropy_with_logits(logits, target):
    """-log(softmax(logits)[target]) as ONE node, via a stable logsumexp.

    ``logits``: a sequence of Values (or numbers); ``target``: the class
    index, an int in [0, len(logits)). The gradient w.r.t. logit i is
    softmax_i - [i == target].
    """
    # the target becomes a plain int first: that may run Python code, which
    # must not run while we hold a list's item pointers
    index = class_index(target, "cross_entropy_with_logits()")
    cdef Py_ssize_t t
    try:
        t = index                      # a C integer: comparing it runs no code
    except OverflowError:
        t = -1
    seq = stable_items(logits, "cross_entropy_with_logits() expects a sequence of logits")
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq)
    if not 0 <= t < n:
        raise IndexError(
            f"cross_entropy_with_logits(): target {int(index)} is out of range for {n} "
            f"classes (accepted: 0 to {n - 1})")
    cdef PyObject** kids = values_array(seq, n, 1, "cross_entropy_with_logits()")
    (<Py_ssize_t*>(kids + n))[0] = t
    cdef double y = ce_f(kids, n, t)
    return finish_nary(y, OP_CE, kids, n, n)


def bce_with_logits(logit, target):
    """Binary cross-entropy of a logit (a Value) against a target in [0, 1]
    as ONE node: max(x, 0) - x*t + log(1 + exp(-|x|)), which never
    overflows; the gradient is sigmoid(x) - t."""
    cdef Value x = as_value(logit, "bce_with_logits(logit)")
    cdef double t = to_double(target, "bce_with_logits(target)")
    if not (0.0 <= t <= 1.0):
        raise ValueError(f"bce_with_logits(): target must be in [0, 1], got {target!r}")
    return with_const(x, t, bcel_f(x.n.data, t), OP_BCEL)


def bce(prob, target):
    """Binary cross-entropy of a probability (a Value) against a target in
    [0, 1] as ONE node, as PyTorch's BCELoss computes it: each log bounded
    below by -100, and the gradient (p - t) / max(p (1 - p), 1e-12), which
    stays finite (and nonzero) for saturated probabilities."""
    cdef Value p = as_value(prob, "bce(prob)")
    cdef double t = to_double(target, "bce(target)")
    if not (0.0 <= t <= 1.0):
        raise ValueError(f"bce(): target must be in [0, 1], got {target!r}")
    if not (0.0 <= p.n.data <= 1.0):
        raise ValueError(
            f"bce(): the probability must be in [0, 1], got {p.n.data!r} "
            "(for logits use bce_with_logits)")
    return with_const(p, t, bcep_f(p.n.data, t), OP_BCEP)


cdef object class_index(object target, str where):
    """The target class as a plain Python int (range checked by the caller)."""
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(
            f"{where}: the target must be an int class index, got "
            f"{type(target).__name__}: {target!r}")
    return operator.index(target)


cdef PyObject** values_array(object seq, Py_ssize_t n, Py_ssize_t extra, str where) except NULL:
    """A new array of n owned Values (numbers become constant leaves) followed
    by `extra` free 8-byte slots. Requires n >= 1."""
    if n < 1:
        raise ValueError(f"{where}: needs at least one value, got an empty sequence")
    cdef PyObject** items = seq_items(seq)
    cdef PyObject** kids = <PyObject**>PyMem_Malloc((n + extra) * sizeof(PyObject*))
    cdef Py_ssize_t i, done = 0
    cdef Value v
    if kids == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            v = as_value(<object>items[i], where, i)
            incref(<PyObject*>v)
            kids[i] = <PyObject*>v
            done += 1
    except BaseException:
        for i in range(done):
            decref(kids[i])
        PyMem_Free(kids)
        raise
    return kids


cdef Value finish_nary(double y, unsigned int op, PyObject** kids, Py_ssize_t count, Py_ssize_t nrefs):
    """Make the n-ary node, or under no_grad a leaf (dropping the array)."""
    cdef Py_ssize_t i
    if grad_on():
        return nary(y, op, kids, count)
    for i in range(nrefs):
        decref(kids[i])
    PyMem_Free(kids)
    return new_leaf(y)


# --- the fused neuron -------------------------------------------------------

cdef struct Inputs:
    PyObject** vals     # borrowed: the input Values (when consts is NULL)
    double* consts      # the inputs as numbers, or NULL when they are Values
    Py_ssize_t n        # how many inputs
    PyObject* pack      # borrowed: the OP_PACK node holding vals (NULL for numbers)
    bint record         # build nodes? (the grad mode when the inputs were read)


cdef object read_inputs(object x, Inputs* inp):
    """Classify a layer's input once: all numbers -> a double buffer; else
    Values (numbers mixed in become constant leaves), held by ONE pack node
    that every neuron of the layer references. Returns the object that keeps
    `inp` valid (the pack, or a bytes buffer)."""
    seq = stable_items(x, "a layer's input must be a sequence of Values or numbers")
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), i
    cdef PyObject** items = seq_items(seq)
    cdef bint all_nums = True
    cdef PyObject** kids
    for i in range(n):
        if type(<object>items[i]) is Value:
            all_nums = False
            break
    inp.n = n
    inp.consts = NULL
    inp.pack = NULL
    inp.record = grad_on()
    if all_nums:
        buf = bytearray(max(n, 1) * sizeof(double))
        inp.consts = <double*><char*>buf
        for i in range(n):
            inp.consts[i] = to_double(<object>items[i], "input", i)
        return buf
    kids = values_array(seq, n, 0, "a layer's input")
    inp.vals = kids
    pack = nary(0.0, OP_PACK, kids, n)
    inp.pack = <PyObject*>pack
    return pack


cdef Value make_affine(object w, object b, Inputs* inp, unsigned int act, Py_ssize_t which):
    """One node act(b + w . x) for a neuron's weights w (Values) and bias b.

    One pass over the weights checks each one's type, accumulates the dot
    product and takes the node's reference to it."""
    wseq = PySequence_Fast(w, "a neuron's weights must be a sequence of Values")
    cdef Py_ssize_t n = inp.n, i, size
    cdef PyObject** ws = seq_items(wseq)
    cdef PyObject* wi
    cdef double z
    cdef PyObject** kids = NULL
    cdef bint record = inp.record
    cdef unsigned int flags = OP_LEAF_WEIGHTS     # dropped if a weight is not a leaf
    if PySequence_Fast_GET_SIZE(wseq) != n:
        raise ValueError(
            f"neuron {which} has {PySequence_Fast_GET_SIZE(wseq)} weights but "
            f"the input has {n} values")
    if type(b) is not Value:
        raise TypeError(f"neuron {which}: bias must be a Value, got {type(b).__name__}")
    if record:
        size = 2 * n + 1 if inp.consts != NULL else n + 2
        kids = <PyObject**>PyMem_Malloc(size * sizeof(PyObject*))
        if kids == NULL:
            raise MemoryError()
    z = (<Value>b).n.data
    for i in range(n):
        wi = ws[i]
        if type(<object>wi) is not Value:
            if record:
                for k in range(i):
                    decref(kids[k])
                PyMem_Free(kids)
            raise TypeError(
                f"neuron {which}: weight {i} must be a Value, got {type(<object>wi).__name__}")
        if node_of(wi).op != OP_LEAF:
            flags = 0
        if inp.consts != NULL:
            z += node_of(wi).data * inp.consts[i]
        else:
            z += node_of(wi).data * node_of(inp.vals[i]).data
        if record:
            incref(wi)
            kids[i] = wi
    z = act_f(act, z)
    if not record:
        return new_leaf(z)
    incref(<PyObject*>b)
    kids[n] = <PyObject*>b
    if inp.consts != NULL:
        memcpy(kids + n + 1, inp.consts, n * sizeof(double))
        return nary(z, (OP_AFFINEC + act) | flags, kids, n)
    incref(inp.pack)
    kids[n + 1] = inp.pack
    return nary(z, (OP_AFFINE + act) | flags, kids, n)


cdef unsigned int check_act(int act) except? 99:
    if not (ACT_IDENTITY <= act <= ACT_SIGMOID):
        raise ValueError(f"unknown activation code {act!r} (accepted: 0 to 3)")
    return <unsigned int>act


def affine(w, x, b, int act=ACT_IDENTITY):
    """act(b + sum_i w[i] * x[i]) as ONE node: a whole neuron.

    ``w``: the weights (Values); ``x``: the inputs (Values or numbers);
    ``b``: the bias (a Value); ``act``: 0 identity, 1 relu, 2 tanh,
    3 sigmoid (fastgrad.nn passes these).
    """
    cdef Inputs inp
    cdef unsigned int a = check_act(act)
    keep = read_inputs(x, &inp)
    return make_affine(w, b, &inp, a, 0)


def layer(neurons, x, int act=ACT_IDENTITY):
    """[affine(n.w, x, n.b, act) for n in neurons], reading x only once."""
    cdef Inputs inp
    cdef unsigned int a = check_act(act)
    keep = read_inputs(x, &inp)
    cdef list out = []
    cdef Py_ssize_t j = 0
    for neuron in neurons:
        out.append(make_affine(neuron.w, neuron.b, &inp, a, j))
        j += 1
    return out


def all_values(seq):
    """True if `seq` (a list or tuple) is non-empty and holds only Values."""
    cdef Py_ssize_t i, n = len(seq)
    if n == 0:
        return False
    for i in range(n):
        if type(seq[i]) is not Value:
            return False
    return True


def is_grad_enabled():
    """False inside ``no_grad()`` (in this thread): new Values then record
    no parents."""
    return grad_on()


def _set_grad_enabled(bint enabled):
    """Set this thread's grad mode and return the previous one (the
    primitive under no_grad and enable_grad)."""
    cdef bint previous = grad_on()
    set_grad_mode(enabled)
    return previous


# Where a Value keeps its Node; nogil kernels use it via node_of().
cdef Py_ssize_t node_offset():
    cdef Value probe = new_value()
    return <Py_ssize_t>(<char*>&probe.n - <char*><PyObject*>probe)

setup_allocation()
if PyThread_tss_create(&mode_key) != 0:
    raise MemoryError("cannot create the per-thread grad mode slot")
NODE_OFFSET = node_offset()
