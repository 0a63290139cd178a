"""The spoken notices as audio for the recorder's mix: the Ogg/Opus clips that
common.notices ships, decoded to 48 kHz mono float32 samples. (The SFU's announcer sends
the same audio as Opus packets: common.notices.notice_frames.)
"""

from __future__ import annotations

import functools

import av
import numpy as np

from common.notices import SAMPLE_RATE, check_kind, ogg_path


@functools.lru_cache(maxsize=None)
def _pcm(kind: str) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks = []
    with av.open(str(ogg_path(kind))) as container:
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    pcm = np.concatenate(chunks).astype(np.float32)
    pcm.flags.writeable = False  # shared by every caller
    return pcm


def notice_pcm(kind: str) -> tuple[np.ndarray, int]:
    """The notice `kind` (common.notices.NOTICE_KINDS) as 48 kHz mono float32 samples in
    [-1, 1] (read-only), and the rate."""
    return _pcm(check_kind(kind)), SAMPLE_RATE
