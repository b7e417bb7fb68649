"""Optimizer update loops over all parameters at once, in C.

fastgrad.optim keeps the bookkeeping (groups, hyperparameters, state dicts);
each step hands one ParamTable and its numpy buffers to one kernel here.
The update rules are PyTorch's (torch.optim.SGD / Adam / AdamW), with
weight decay given per parameter so that biases can be spared.
"""

from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.math cimport sqrt, pow

from fastgrad._engine cimport Node, Value


# ---------------------------------------------------------------------------
# Kernels: plain C over Node pointers and double arrays.
# ---------------------------------------------------------------------------

cdef void zero_kernel(Node** nodes, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        nodes[i].grad = 0.0


cdef void sgd_kernel(Node** nodes, Py_ssize_t n, const double* decay,
                     double* buf, double lr, double momentum,
                     double dampening, bint nesterov, bint first) noexcept nogil:
    """d = grad + decay_i * w; with momentum: buf = d on the first step, else
    momentum * buf + (1 - dampening) * d; d = buf (or d + momentum * buf
    with Nesterov); w -= lr * d."""
    cdef Py_ssize_t i
    cdef Node* p
    cdef double d
    for i in range(n):
        p = nodes[i]
        d = p.grad + decay[i] * p.data
        if momentum != 0.0:
            if first:
                buf[i] = d
            else:
                buf[i] = momentum * buf[i] + (1.0 - dampening) * d
            if nesterov:
                d = d + momentum * buf[i]
            else:
                d = buf[i]
        p.data -= lr * d


cdef void adam_kernel(Node** nodes, Py_ssize_t n, const double* decay,
                      double* m, double* v, double lr, double beta1,
                      double beta2, double eps, long step,
                      bint decoupled) noexcept nogil:
    """Adam (decoupled=False: L2 decay added to the gradient) or AdamW
    (decoupled=True: w *= 1 - lr * decay_i before the Adam update)."""
    cdef Py_ssize_t i
    cdef Node* p
    cdef double g
    cdef double bc1 = 1.0 - pow(beta1, <double>step)
    cdef double bc2_sqrt = sqrt(1.0 - pow(beta2, <double>step))
    cdef double step_size = lr / bc1
    for i in range(n):
        p = nodes[i]
        g = p.grad
        if decoupled:
            p.data *= 1.0 - lr * decay[i]
        else:
            g = g + decay[i] * p.data
        m[i] += (g - m[i]) * (1.0 - beta1)
        v[i] = v[i] * beta2 + (1.0 - beta2) * g * g
        p.data -= step_size * m[i] / (sqrt(v[i]) / bc2_sqrt + eps)


# ---------------------------------------------------------------------------
# The owner of the parameter array.
# ---------------------------------------------------------------------------

cdef class ParamTable:
    """The Values one optimizer group updates, as a C array of their Nodes."""

    cdef Node** nodes           # each parameter's Node (kept alive by `values`)
    cdef Py_ssize_t n           # number of parameters
    cdef readonly tuple values  # the parameter Values themselves

    def __cinit__(self, values):
        cdef Py_ssize_t i
        self.values = tuple(values)
        self.n = len(self.values)
        for i in range(self.n):
            if type(self.values[i]) is not Value:
                raise TypeError(
                    f"parameter {i} must be a fastgrad Value, got "
                    f"{type(self.values[i]).__name__}")
        self.nodes = <Node**>PyMem_Malloc(max(self.n, 1) * sizeof(Node*))
        if self.nodes == NULL:
            raise MemoryError()
        for i in range(self.n):
            self.nodes[i] = &(<Value>self.values[i]).n

    def __dealloc__(self):
        PyMem_Free(self.nodes)

    def __len__(self):
        return self.n

    cdef int check(self, const double[::1] a, str what) except -1:
        if a.shape[0] != self.n:
            raise ValueError(f"{what} has {a.shape[0]} entries for {self.n} parameters")
        return 0

    def zero_grad(self):
        """Set every parameter's grad to 0."""
        zero_kernel(self.nodes, self.n)

    def sgd(self, const double[::1] decay, double[::1] buf, double lr,
            double momentum, double dampening, bint nesterov, bint first):
        """One SGD step over all parameters (see sgd_kernel)."""
        self.check(decay, "decay")
        if momentum != 0.0:
            self.check(buf, "momentum buffer")
        with nogil:
            sgd_kernel(self.nodes, self.n, &decay[0] if self.n else NULL,
                       &buf[0] if buf.shape[0] else NULL, lr, momentum,
                       dampening, nesterov, first)

    def adam(self, const double[::1] decay, double[::1] m, double[::1] v,
             double lr, double beta1, double beta2, double eps, long step,
             bint decoupled):
        """One Adam/AdamW step over all parameters (see adam_kernel)."""
        self.check(decay, "decay")
        self.check(m, "exp_avg")
        self.check(v, "exp_avg_sq")
        if self.n == 0:
            return
        with nogil:
            adam_kernel(self.nodes, self.n, &decay[0], &m[0], &v[0], lr,
                        beta1, beta2, eps, step, decoupled)
