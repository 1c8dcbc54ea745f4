"""What every plan object shares: the C handle, one caller at a time, close()."""
import threading

from . import _lib


class Plan:
    """A library plan: created once, executed many times, closed (or used as a context
    manager). One plan serves one caller at a time (the library's plans are not reentrant):
    a call while another thread is inside the same plan raises RuntimeError instead of
    racing; use one plan per thread. close() waits for a call in progress."""

    _destroy = None           # name of the library's destroy function

    def __init__(self):
        self._handles = []    # C handles owned (destroyed in reverse order by close)
        self._lock = threading.Lock()
        self._closed = False

    # ---- lifetime -----------------------------------------------------------------------
    def close(self):
        """Free the plan's memory; later calls raise ValueError. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._release()

    def _release(self):
        destroy = getattr(_lib.lib, self._destroy)
        while self._handles:
            h = self._handles.pop()
            if h:
                destroy(h)

    @property
    def closed(self):
        return self._closed

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if not self._closed:
                self._closed = True
                self._release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _check_open(self):
        if self._closed:
            raise ValueError(f"{type(self).__name__} plan is closed")

    # ---- one caller at a time -----------------------------------------------------------
    def _enter(self):
        """Take the plan for one call (raise if closed or busy); pair with _leave."""
        if not self._lock.acquire(blocking=False):
            if self._closed:
                raise ValueError(f"{type(self).__name__} plan is closed")
            raise RuntimeError(f"{type(self).__name__} plan is in use by another thread (a plan "
                               "is not reentrant: use one plan per thread)")
        if self._closed:
            self._lock.release()
            raise ValueError(f"{type(self).__name__} plan is closed")

    def _leave(self):
        self._lock.release()

    class _Using:
        __slots__ = ("plan",)

        def __init__(self, plan):
            self.plan = plan

        def __enter__(self):
            self.plan._enter()

        def __exit__(self, *exc):
            self.plan._leave()

    def _using(self):
        """with self._using(): one call into the plan."""
        return Plan._Using(self)
