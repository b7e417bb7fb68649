# The engine's data model. Read this file first: everything the compiled
# kernels know about a node is declared here; the bodies are in _engine.pyx.

from cpython.object cimport PyObject


# Op codes. A node's op says how many parents it has and where they live:
#   leaf      no parents
#   unary     parent in `a.obj`
#   const     parent in `a.obj`, the constant operand in `b.num`
#   binary    parents in `a.obj` and `b.obj`
#   n-ary     parents in the array `a.kids`, its length in `b.count`
cdef enum Op:
    OP_LEAF = 0     # created by Value(x), or by any op under no_grad()
    # binary: y = f(a, b)
    OP_ADD          # a + b
    OP_SUB          # a - b
    OP_MUL          # a * b
    OP_DIV          # a / b
    OP_POW          # a ** b
    # one Value and one number c (in b.num)
    OP_ADDC         # a + c   (a - c is stored as a + (-c), which IEEE makes exact)
    OP_MULC         # a * c
    OP_RSUBC        # c - a
    OP_DIVC         # a / c
    OP_RDIVC        # c / a
    OP_POWC         # a ** c
    OP_RPOWC        # c ** a
    OP_CLAMPLO      # max(a, c)   (torch.clamp(a, min=c))
    OP_CLAMPHI      # min(a, c)   (torch.clamp(a, max=c))
    OP_BCEL         # binary cross-entropy of logit a against target c
    OP_BCEP         # binary cross-entropy of probability a against target c
    # unary: y = f(a)
    OP_NEG          # -a
    OP_RELU         # max(a, 0)
    OP_TANH         # tanh(a)
    OP_SIGMOID      # 1 / (1 + exp(-a))
    OP_EXP          # exp(a)
    OP_LOG          # log(a)
    OP_ABS          # |a|
    # n-ary, one node for many parents
    OP_SUM          # kids[0] + ... + kids[n-1]
    OP_DOT          # sum_i kids[i] * kids[n+i]          (array holds 2n Values)
    OP_DOTC         # sum_i kids[i] * consts[i]          (n Values, then n doubles)
    OP_LSE          # log(sum_i exp(kids[i]))             (n Values)
    OP_CE           # logsumexp(kids) - kids[t]           (n Values, then t as an index)
    OP_PACK         # a layer's input Values, held once for all its neurons (no value)
    # fused neuron act(b + sum_i w_i * x_i); act = op - OP_AFFINE (or - OP_AFFINEC)
    OP_AFFINE       # array: w_0..w_{n-1}, b, pack (an OP_PACK of the n x_i)  act: identity
    OP_AFFINE_RELU
    OP_AFFINE_TANH
    OP_AFFINE_SIGMOID
    OP_AFFINEC      # array: w_0..w_{n-1}, b, then n doubles x_i      act: identity
    OP_AFFINEC_RELU
    OP_AFFINEC_TANH
    OP_AFFINEC_SIGMOID
    OP_NUM_OPS      # sentinel: number of op codes


# A flag or-ed into a fused neuron's op when every weight was a leaf when
# the node was built (a leaf stays a leaf): backward's search then skips the
# weights and visits only the bias and the inputs. Mask it off to read the op.
cdef enum:
    OP_MASK = 0xFF
    OP_LEAF_WEIGHTS = 0x100

# Activations of the fused neuron, in the order of the OP_AFFINE* codes.
cdef enum Act:
    ACT_IDENTITY = 0
    ACT_RELU = 1
    ACT_TANH = 2
    ACT_SIGMOID = 3


cdef union First:
    PyObject* obj       # the first (or only) parent; an owned reference
    PyObject** kids     # n-ary ops: PyMem-allocated array of parents (owned references)


cdef union Second:
    PyObject* obj       # binary ops: the second parent; an owned reference
    double num          # const ops: the number operand
    Py_ssize_t count    # n-ary ops: n, the number of terms (see each op's array layout)


cdef struct Node:
    double data         # the forward value
    double grad         # d(root)/d(node) after backward(); accumulates on leaves
    First a             # first parent, or the n-ary parent array
    Second b            # second parent, constant operand, or n-ary count
    unsigned int op     # an Op code
    unsigned int mark   # backward() epoch that last visited this node (scratch)


# One scalar in the graph. 56 bytes: the object header and one Node.
# Not tracked by the cyclic GC (a node only references older nodes, so
# cycles cannot form) and final (a subclass would bring a __dict__ and GC).
cdef class Value:
    cdef Node n         # everything the kernels read and write


# Byte offset of `Value.n` inside a Value object, so nogil kernels can go
# from a parent's PyObject* to its Node without touching Python.
cdef Py_ssize_t NODE_OFFSET

cdef inline Node* node_of(PyObject* o) noexcept nogil:
    return <Node*>((<char*>o) + NODE_OFFSET)
