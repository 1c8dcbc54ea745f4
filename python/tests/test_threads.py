"""Threads: two plans in two threads give the same bits as one thread; the GIL is released in
the library; a plan refuses a second caller instead of racing, and close() waits for a call."""
import ctypes
import threading
import time

import numpy as np
import pytest

import ropekit
from conftest import assert_bits, randn
from ropekit import _lib


def inputs(dtype, n=192, d=32, seed=40):
    return [randn((2, 2, n, d), dtype, seed + i) for i in range(4)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_threads_two_plans_same_bits_as_one_thread(dtype):
    q, k, v, dout = inputs(dtype)
    n, d = q.shape[2], q.shape[3]
    shape = dict(n_q=n, d=d, batch=2, heads=2)
    plans = [ropekit.Attention("softmax-rope", causal=True, threads=1, **shape),
             ropekit.Attention("performer", causal=True, features=64, threads=2, **shape),
             ropekit.Attention("rpe-fft", causal=True, features=16, threads=1, **shape)]
    rope = [ropekit.Rope(d, style="half"), ropekit.Rope(d, scaling="yarn:4:64")]

    def work(plan):
        if isinstance(plan, ropekit.Rope):
            return [plan(q, offset=9), plan.backward(dout, offset=9)]
        out = [plan(q, k, v)]
        if plan.variant.startswith("softmax"):
            out += list(plan.grad(q, k, v, dout))
        return out

    one = [work(p) for p in plans + rope]               # one thread, one plan after another
    results = {}

    def run(i, plan):
        results[i] = [work(plan) for _ in range(3)]

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(plans + rope)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, want in enumerate(one):
        for rep in results[i]:
            for a, b in zip(rep, want):
                assert_bits(a, b, f"plan {i} in a thread")
    for p in plans + rope:
        p.close()


def test_library_calls_release_the_gil():
    # ctypes.CDLL (not PyDLL): every foreign call drops the GIL while it runs
    assert isinstance(_lib.lib, ctypes.CDLL) and not isinstance(_lib.lib, ctypes.PyDLL)
    assert not _lib.lib.rk_attn_execute_batch._flags_ & ctypes._FUNCFLAG_PYTHONAPI
    # and behaviourally: the main thread keeps running Python during a long call
    q, k, v, _ = inputs(np.float64, n=768, d=64)
    with ropekit.Attention("softmax", n_q=768, d=64, batch=2, heads=2, threads=1) as att:
        t0 = time.perf_counter()
        att(q, k, v)
        alone = time.perf_counter() - t0
        done = threading.Event()

        def call():
            att(q, k, v)
            done.set()

        # the main thread's largest pause from before the start to after the end: with the
        # GIL held through the call it would stand still for about the whole call
        t = threading.Thread(target=call)
        last, gap = time.perf_counter(), 0.0
        t.start()
        while not done.is_set():
            now = time.perf_counter()
            gap, last = max(gap, now - last), now
        t.join()
        gap = max(gap, time.perf_counter() - last)
    assert alone > 0.05, f"the call is too short ({alone:.3f} s) to tell"
    assert gap < alone / 2, (f"the main thread stood still for {gap:.3f} s during a "
                             f"{alone:.3f} s call: the GIL was held")


def test_a_busy_plan_refuses_a_second_caller():
    q, k, v, _ = inputs(np.float32, n=16, d=8)
    with ropekit.Attention(n_q=16, d=8, batch=2, heads=2) as att:
        want = att(q, k, v)
        att._lock.acquire()                    # as if another thread were inside the plan
        try:
            with pytest.raises(RuntimeError, match="in use by another thread"):
                att(q, k, v)
        finally:
            att._lock.release()
        assert_bits(att(q, k, v), want)


def test_close_waits_for_a_call_in_progress():
    q, k, v, _ = inputs(np.float64, n=512, d=64)
    att = ropekit.Attention("softmax", n_q=512, d=64, batch=2, heads=2, threads=1)
    want = ropekit.attend(q, k, v, threads=1)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("out", att(q, k, v)))
    t.start()
    while not att._lock.locked() and t.is_alive():
        time.sleep(0.0005)
    att.close()                                # must not free the plan under the call
    t.join()
    assert_bits(got["out"], want)
    with pytest.raises(ValueError, match="closed"):
        att(q, k, v)
