"""nbval settings for the notebook series: FAST preset, offline, no GUI, a fresh cache.

The kernels nbval starts inherit this process's environment, so the notebooks run with the
FAST training preset (seconds per run) and never touch the network.
"""

import os
import tempfile

os.environ.setdefault("PREFIXLAB_PRESET", "fast")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
os.environ.setdefault("PYTHONHASHSEED", "0")
os.environ.setdefault("PREFIXLAB_CACHE", tempfile.mkdtemp(prefix="prefixlab-nbval-cache-"))
os.environ.setdefault("TQDM_DISABLE", "1")
# One torch thread per kernel: on a busy 2-core machine a second thread mostly waits for the
# scheduler (measured 7-13x slower under load); results do not depend on the thread count.
os.environ.setdefault("OMP_NUM_THREADS", "1")
