"""NumPy references, in float64, written from the definitions (ropekit.h, docs/theory.md):
RoPE, exact softmax attention, FAVOR+, linear attention, the uniform baseline, the FFT
relative-bias attention as an O(n^2) sum. Arrays are (n, d) slices."""
import numpy as np


def thetas(r, base=10000.0):
    return base ** (-2.0 * np.arange(r // 2) / r)


def rope(x, pos, style="interleaved", base=10000.0, rotary_dim=None, freqs=None,
         inverse=False, mscale=1.0):
    """x (n, d) at positions pos (n,): pair i turns by pos * theta_i."""
    x = np.asarray(x, np.float64)
    d = x.shape[-1]
    r = rotary_dim or d
    th = thetas(r, base) if freqs is None else np.asarray(freqs, np.float64)
    ang = np.asarray(pos, np.float64)[:, None] * th[None, :]
    c, s = np.cos(ang) * mscale, np.sin(ang) * mscale
    if inverse:
        c, s = c / mscale ** 2, -s / mscale ** 2
    y = x.copy()
    if style == "interleaved":
        a, b = x[:, 0:r:2], x[:, 1:r:2]
        y[:, 0:r:2], y[:, 1:r:2] = a * c - b * s, a * s + b * c
    else:
        a, b = x[:, :r // 2], x[:, r // 2:r]
        y[:, :r // 2], y[:, r // 2:r] = a * c - b * s, a * s + b * c
    return y


def visible(n_q, n_kv, causal, kv_len=None):
    """(n_q, n_kv) mask: query i sees key j (bottom-right causal alignment, key padding)."""
    i = np.arange(n_q)[:, None]
    j = np.arange(n_kv)[None, :]
    m = np.ones((n_q, n_kv), bool)
    if causal:
        m &= j <= i + (n_kv - n_q)
    if kv_len is not None:
        m &= j < kv_len
    return m


def bias_matrix(bias, n_q, n_kv):
    """Query i and key j read bias[j - i + n_q - 1]."""
    i = np.arange(n_q)[:, None]
    j = np.arange(n_kv)[None, :]
    return np.asarray(bias, np.float64)[j - i + n_q - 1]


def weighted(w, v):
    """out_i = sum_j w_ij v_j / sum_j w_ij; a row with no weight gives zeros."""
    den = w.sum(axis=1, keepdims=True)
    num = w @ np.asarray(v, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def softmax(q, k, v, causal=False, scale=None, bias=None, kv_len=None):
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    n_q, d = q.shape
    n_kv = k.shape[0]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    logits = scale * q @ k.T
    if bias is not None:
        logits = logits + bias_matrix(bias, n_q, n_kv)
    m = visible(n_q, n_kv, causal, kv_len)
    logits = np.where(m, logits, -np.inf)
    mx = np.max(logits, axis=1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    w = np.where(m, np.exp(logits - mx), 0.0)
    return weighted(w, v)


def softmax_grad(q, k, v, dout, causal=False, scale=None):
    """dq, dk, dv of sum(dout * softmax(q, k, v))."""
    q, k, v, g = (np.asarray(a, np.float64) for a in (q, k, v, dout))
    n_q, d = q.shape
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    m = visible(n_q, k.shape[0], causal)
    logits = np.where(m, scale * q @ k.T, -np.inf)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = np.where(m, p, 0.0)
    p /= p.sum(axis=1, keepdims=True)
    dv = p.T @ g
    dp = g @ v.T
    ds = p * (dp - (dp * p).sum(axis=1, keepdims=True))
    return scale * ds @ k, scale * ds.T @ q, dv


def favor_positive(x, w, scale):
    """FAVOR+ positive features phi(x) = exp(w x' - |x'|^2 / 2) / sqrt(m), x' = sqrt(scale) x."""
    x = np.sqrt(scale) * np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    return np.exp(x @ w.T - 0.5 * np.sum(x * x, axis=1, keepdims=True)) / np.sqrt(w.shape[0])


def kernel_attention(fq, fk, v, causal=False, kv_len=None, coef=None):
    """out_i = sum_j c_ij fq_i . fk_j v_j / sum_j c_ij fq_i . fk_j over the visible keys."""
    w = fq @ fk.T
    if coef is not None:
        w = w * coef
    w = np.where(visible(fq.shape[0], fk.shape[0], causal, kv_len), w, 0.0)
    return weighted(w, v)


def performer(q, k, v, w, causal=False, scale=None, kv_len=None):
    scale = 1.0 / np.sqrt(q.shape[1]) if scale is None else scale
    return kernel_attention(favor_positive(q, w, scale), favor_positive(k, w, scale), v, causal,
                            kv_len)


def feature_map(x, kind="elu"):
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x + 1.0, np.exp(x)) if kind == "elu" else np.maximum(x, 0.0)


def linear(q, k, v, causal=False, kind="elu", kv_len=None):
    return kernel_attention(feature_map(q, kind), feature_map(k, kind), v, causal, kv_len)


def uniform(n_q, v, causal=False, kv_len=None):
    w = visible(n_q, v.shape[0], causal, kv_len).astype(np.float64)
    return weighted(w, v)


def rpe(fq, fk, v, bias, causal=False):
    """Luo et al.: c_ij = exp(b(t)) weights on the kernel products."""
    coef = np.exp(bias_matrix(bias, fq.shape[0], fk.shape[0]))
    return kernel_attention(fq, fk, v, causal, coef=coef)
