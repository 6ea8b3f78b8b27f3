"""Device-memory sampling through NVML (nvidia-ml-py) from a side thread.

The sampler reads the GPU's used memory every `interval` seconds while a run is under way;
the timeline is relative to the run's start, and `baseline` (the memory in use before the run)
is subtracted so that runs are comparable. Without NVML (no GPU, no driver) `Sampler.available`
is False and the timeline stays empty: the report says so instead of inventing numbers
(HARNESS_NO_NVML=1 makes it so on purpose, for tests)."""
import os
import threading
import time


class Sampler:
    def __init__(self, interval=0.05, device_index=0):
        self.interval = interval
        self.samples = []  # (seconds since start, bytes used above baseline)
        self.baseline = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = None
        self._handle = None
        if os.environ.get("HARNESS_NO_NVML"):  # the harness's own tests: the same behaviour on a GPU machine
            self.error = "NVML not used (HARNESS_NO_NVML is set)"
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        except Exception as e:  # no driver, no GPU, no package
            self.error = f"NVML unavailable: {e}"

    @property
    def available(self):
        return self._handle is not None

    def used(self):
        return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used

    def start(self):
        self.samples = []
        if not self.available:
            return self
        self.baseline = self.used()
        self._stop.clear()
        t0 = time.perf_counter()

        def loop():
            while not self._stop.is_set():
                try:
                    self.samples.append((time.perf_counter() - t0, max(0, self.used() - self.baseline)))
                except Exception as e:
                    self.error = f"NVML read failed: {e}"
                    return
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return self.samples

    def peak(self):
        return max((b for _, b in self.samples), default=None)
