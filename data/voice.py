"""Speech-like audio synthesis for the synthetic database: voices, syllables, formants.

A voice is a handful of numbers (`Voice`): mean pitch, formant scale, speaking rate,
brightness and loudness. An utterance of a given duration is a stream of syllables at
the voice's rate; every syllable is a harmonic source (sawtooth on a smooth pitch
contour) through three formant resonators of one vowel (scaled by the voice's formant
scale), a short noise burst at its onset (the consonant), and a raised-sine amplitude
envelope (syllable-rate modulation). Cheap (a few IIR filters per syllable), yet
different voices are separable by pitch and timbre, and two voices with the same
parameters are not: that is what `synthetic.py` relies on for its look-alike pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from core.constants import SAMPLE_RATE

# (F1, F2, F3) in Hz of a few vowels, for a formant scale of 1.0.
VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
     [570, 840, 2410], [440, 1020, 2240], [660, 1720, 2410]],
    dtype=np.float64,
)
BANDWIDTHS_HZ = np.array([80.0, 110.0, 160.0])


@dataclass(frozen=True)
class Voice:
    """Parameters of one synthetic voice.

    f0_hz: mean pitch; formant_scale: vocal-tract scaling of every formant; rate_hz:
    syllables per second; brightness: 0 (dull) to 1 (bright) spectral tilt;
    loudness: RMS of the voice's speech (full scale = 1).
    """

    f0_hz: float
    formant_scale: float
    rate_hz: float
    brightness: float
    loudness: float

    def look_alike(self, rng: np.random.Generator, spread: float) -> "Voice":
        """A voice whose every parameter is within `spread` (relative) of this one."""
        jitter = 1.0 + rng.uniform(-spread, spread, size=5)
        return Voice(self.f0_hz * jitter[0], self.formant_scale * jitter[1],
                     self.rate_hz * jitter[2], float(np.clip(self.brightness * jitter[3], 0, 1)),
                     self.loudness * jitter[4])


def random_voice(rng: np.random.Generator) -> Voice:
    """A voice drawn from a low (male-like) or high (female-like) pitch range."""
    if rng.random() < 0.5:
        f0 = rng.uniform(85.0, 150.0)
        scale = rng.uniform(0.85, 1.02)
    else:
        f0 = rng.uniform(165.0, 260.0)
        scale = rng.uniform(1.0, 1.2)
    return Voice(f0_hz=f0, formant_scale=scale, rate_hz=rng.uniform(3.5, 6.0),
                 brightness=rng.uniform(0.2, 0.9), loudness=rng.uniform(0.05, 0.1))


def _resonator(freq_hz: float, bandwidth_hz: float) -> np.ndarray:
    """Denominator of a two-pole resonator at `freq_hz` (unit-gain numerator applied later)."""
    radius = np.exp(-np.pi * bandwidth_hz / SAMPLE_RATE)
    theta = 2 * np.pi * freq_hz / SAMPLE_RATE
    return np.array([1.0, -2.0 * radius * np.cos(theta), radius * radius])


def _formant_filter(formants_hz: np.ndarray) -> tuple:
    """(b, a) of the cascade of three resonators, normalised to unit gain at 0 Hz-ish."""
    a = np.array([1.0])
    for freq, bandwidth in zip(formants_hz, BANDWIDTHS_HZ):
        a = np.convolve(a, _resonator(min(freq, 0.45 * SAMPLE_RATE), bandwidth))
    b = np.array([np.sum(a)])
    return b, a


def synthesize(voice: Voice, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """One utterance of `duration_s` seconds by `voice`, shape (samples,) float32.

    Its RMS over voiced parts is about `voice.loudness`; it starts and ends near zero.
    """
    num_samples = max(int(round(duration_s * SAMPLE_RATE)), 1)
    # syllable boundaries (samples)
    bounds = [0]
    while bounds[-1] < num_samples:
        length = rng.gamma(6.0, 1.0 / (6.0 * voice.rate_hz)) * SAMPLE_RATE
        bounds.append(bounds[-1] + max(int(length), 400))
    bounds[-1] = num_samples
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 800:  # merge a tiny last syllable
        bounds.pop(-2)
    bounds = np.asarray(bounds)
    num_syllables = len(bounds) - 1

    # pitch contour: per-syllable accents, interpolated, with a slow declination
    centres = 0.5 * (bounds[:-1] + bounds[1:])
    accents = voice.f0_hz * (1.0 + rng.normal(0.0, 0.06, size=num_syllables))
    t = np.arange(num_samples)
    f0 = np.interp(t, centres, accents) * (1.0 - 0.12 * t / num_samples)
    phase = np.cumsum(f0 / SAMPLE_RATE)
    source = 2.0 * (phase % 1.0) - 1.0
    # spectral tilt: one-pole low-pass, darker voices filter more
    pole = 0.9 - 0.6 * voice.brightness
    source = lfilter([1.0 - pole], [1.0, -pole], source)

    out = np.zeros(num_samples, dtype=np.float64)
    vowels = rng.integers(0, len(VOWELS), size=num_syllables)
    for k in range(num_syllables):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        length = hi - lo
        b, a = _formant_filter(VOWELS[vowels[k]] * voice.formant_scale)
        voiced = lfilter(b, a, source[lo:hi])
        voiced /= np.sqrt(np.mean(voiced ** 2)) + 1e-8
        onset = min(length // 4, int(rng.uniform(0.02, 0.06) * SAMPLE_RATE))
        if onset > 8 and rng.random() < 0.7:  # consonant: high-passed noise burst
            burst = np.diff(rng.normal(0.0, 0.5, size=onset + 1))
            voiced[:onset] = voiced[:onset] * np.linspace(0, 1, onset) + burst
        envelope = np.sin(np.pi * np.linspace(0.0, 1.0, length)) ** 0.6
        out[lo:hi] = voiced * envelope * rng.uniform(0.6, 1.0)
    out *= voice.loudness / (np.sqrt(np.mean(out ** 2)) + 1e-8)
    return out.astype(np.float32)
