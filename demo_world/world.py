"""A procedural audio-visual world at the tiny preset's size, with prompts that describe it.

Every clip is one scene: a face that says a few syllables, a ball that clicks when it bounces, or a
product box that slides; one of a few colours on one of a few backgrounds, with that background's
ambience. Pictures are 64 x 112, 25 frames at 24 fps (the `tiny` preset); sound is 48 kHz mono,
exactly as many samples as the pipeline's soundtrack for those frames. Pure numpy, seeded: the
same `Scene` always renders the same clip, bit for bit.

The ground truth the analysers need (mouth opening per frame, syllable onsets, bounce times), and
where the mouth is (for training), is rendered alongside the media, from the same numbers that
drew them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HEIGHT, WIDTH = 64, 112
NUM_FRAMES = 25
FPS = 24.0
SAMPLE_RATE_HZ = 48_000
# floor(48000 * 25 / 24): the soundtrack length the pipeline trims its audio to.
NUM_SAMPLES = math.floor(SAMPLE_RATE_HZ * NUM_FRAMES / FPS)
SAMPLES_PER_FRAME = SAMPLE_RATE_HZ / FPS  # 2000

# Saturated, far-apart colours so that a blurry generated frame still reads unambiguously.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "yellow": (235, 205, 40),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "blue": (50, 80, 190),
    "green": (40, 140, 60),
    "grey": (105, 105, 105),
}
# What each background sounds like, as the prompt says it.
AMBIENCE: dict[str, str] = {"blue": "a soft wind", "green": "crickets", "grey": "a low hum"}
OBJECTS = ("face", "ball", "box")
# (first formant, second formant) in Hz: the vowel the listener hears.
SYLLABLES: dict[str, tuple[float, float]] = {"ba": (750.0, 1250.0), "bo": (500.0, 900.0),
                                             "bi": (320.0, 2300.0)}
MOTIONS: dict[str, tuple[str, ...]] = {
    "face": ("still", "left", "right"),
    "ball": ("bounces",),
    "box": ("still", "left", "right"),
}
MAX_SYLLABLES = 3

FACE_RADIUS = 17
BALL_RADIUS = 8
BOX_HALF_W, BOX_HALF_H = 15, 12
MOUTH_HALF_W = 6
MOUTH_MAX_HALF_H = 4.5
MOUTH_OFFSET_Y = 7  # mouth centre below the face centre, pixels
DARK = (25, 15, 15)  # eyes, mouth, box outline
SLIDE_PX = 24  # horizontal travel over the clip for "left" / "right"
SYLLABLE_S = 0.22
SYLLABLE_PITCH_HZ = 140.0
BOUNCE_PERIOD_FRAMES = 10.0
FLOOR_Y = 54  # the ball's lowest centre row (touching the floor)
BOUNCE_HEIGHT_PX = 26


@dataclass(frozen=True)
class Scene:
    """Everything that decides a clip. `seed` drives positions, timing and noise."""

    obj: str
    colour: str
    background: str
    motion: str
    syllable: str = "ba"
    num_syllables: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.obj not in OBJECTS:
            raise ValueError(f"obj={self.obj!r}; expected one of {', '.join(OBJECTS)}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour={self.colour!r}; expected one of {', '.join(COLOURS)}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background={self.background!r}; expected one of "
                             f"{', '.join(BACKGROUNDS)}")
        if self.motion not in MOTIONS[self.obj]:
            raise ValueError(f"motion={self.motion!r} for a {self.obj}; expected one of "
                             f"{', '.join(MOTIONS[self.obj])}")
        if self.syllable not in SYLLABLES:
            raise ValueError(f"syllable={self.syllable!r}; expected one of "
                             f"{', '.join(SYLLABLES)}")
        speaks = self.obj == "face"
        if speaks and not 1 <= self.num_syllables <= MAX_SYLLABLES:
            raise ValueError(f"a face says 1..{MAX_SYLLABLES} syllables; got "
                             f"{self.num_syllables}")
        if not speaks and self.num_syllables:
            raise ValueError(f"only a face speaks; a {self.obj} got {self.num_syllables} "
                             "syllables")

    @property
    def speech(self) -> str:
        """The spoken text, e.g. `ba ba ba` (empty unless a face)."""
        return " ".join([self.syllable] * self.num_syllables)


@dataclass(frozen=True)
class RenderedClip:
    """Media plus the ground truth that drew it."""

    scene: Scene
    prompt: str
    frames: np.ndarray  # uint8 (T, H, W, 3)
    audio: np.ndarray  # float32 (N,) in [-1, 1]
    mouth_open: np.ndarray  # float32 (T,) in [0, 1]; zeros unless a face
    mouth_centre: np.ndarray  # float32 (T, 2) pixel x, y of the mouth's centre; nan unless a face
    syllable_onsets_s: tuple[float, ...]
    bounce_times_s: tuple[float, ...]


def prompt_for(scene: Scene) -> str:
    """The templated English prompt: what is visible, then what is heard."""
    where = f"on a {scene.background} background"
    ambience = AMBIENCE[scene.background]
    if scene.obj == "face":
        moving = "" if scene.motion == "still" else f" moving {scene.motion}"
        return (f'A {scene.colour} face{moving} {where} says "{scene.speech}", '
                f"over {ambience}.")
    if scene.obj == "ball":
        return f"A {scene.colour} ball bounces {where}, clicking at each bounce, over {ambience}."
    action = "stands still" if scene.motion == "still" else f"slides {scene.motion}"
    return f"A {scene.colour} product box {action} {where}, over {ambience}."


def sample_scene(rng: np.random.Generator) -> Scene:
    """A uniformly drawn scene (objects, colours, backgrounds, motions, speech)."""
    obj = OBJECTS[int(rng.integers(len(OBJECTS)))]
    motions = MOTIONS[obj]
    return Scene(
        obj=obj,
        colour=list(COLOURS)[int(rng.integers(len(COLOURS)))],
        background=list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))],
        motion=motions[int(rng.integers(len(motions)))],
        syllable=list(SYLLABLES)[int(rng.integers(len(SYLLABLES)))] if obj == "face" else "ba",
        num_syllables=int(rng.integers(1, MAX_SYLLABLES + 1)) if obj == "face" else 0,
        seed=int(rng.integers(2**31)),
    )


# ---- timing ----------------------------------------------------------------------------------


def _syllable_onsets(scene: Scene, rng: np.random.Generator) -> tuple[float, ...]:
    if scene.obj != "face":
        return ()
    duration_s = NUM_FRAMES / FPS
    spacing = rng.uniform(0.28, 0.33)
    latest_start = duration_s - 0.04 - SYLLABLE_S - spacing * (scene.num_syllables - 1)
    start = rng.uniform(0.06, max(0.07, latest_start))
    return tuple(float(start + i * spacing) for i in range(scene.num_syllables))


def _ball_height(phase: float) -> np.ndarray:
    """Height above the floor per frame (pixels): |sin|, so contacts are sharp like a bounce."""
    t = np.arange(NUM_FRAMES) / BOUNCE_PERIOD_FRAMES + phase
    return BOUNCE_HEIGHT_PX * np.abs(np.sin(np.pi * t))


def _bounce_times(phase: float) -> tuple[float, ...]:
    """Contact instants (s): where the |sin| trajectory touches zero inside the clip."""
    times = []
    k = math.ceil(phase)
    while True:
        frame = (k - phase) * BOUNCE_PERIOD_FRAMES
        if frame > NUM_FRAMES - 1:
            break
        times.append(frame / FPS)
        k += 1
    return tuple(times)


def syllable_envelope(onsets_s: tuple[float, ...], num_samples: int = NUM_SAMPLES) -> np.ndarray:
    """Amplitude envelope of the speech (N,) in [0, 1]: a raised sine per syllable."""
    t = np.arange(num_samples) / SAMPLE_RATE_HZ
    env = np.zeros(num_samples)
    for onset in onsets_s:
        u = (t - onset) / SYLLABLE_S
        inside = (u >= 0) & (u <= 1)
        # sin^0.7: a fast "b" release into the vowel, then a slower fade.
        env[inside] = np.maximum(env[inside], np.sin(np.pi * u[inside]) ** 0.7)
    return env


def frame_envelope(env: np.ndarray) -> np.ndarray:
    """Mean of a per-sample envelope over each video frame's span -> (T,)."""
    edges = np.round(np.arange(NUM_FRAMES + 1) * SAMPLES_PER_FRAME).astype(int)
    return np.array([env[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])


# ---- sound -----------------------------------------------------------------------------------


def _voice(syllable: str, env: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Formant-shaped harmonics of a slightly wavering pitch, times the envelope."""
    f1, f2 = SYLLABLES[syllable]
    t = np.arange(env.size) / SAMPLE_RATE_HZ
    pitch = SYLLABLE_PITCH_HZ * (1 + 0.03 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6.3)))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE_HZ
    out = np.zeros(env.size)
    for k in range(1, int(4000 // SYLLABLE_PITCH_HZ)):
        f = k * SYLLABLE_PITCH_HZ
        gain = np.exp(-((f - f1) / 160) ** 2) + 0.6 * np.exp(-((f - f2) / 220) ** 2) + 0.04
        out += gain * np.sin(k * phase)
    out /= np.abs(out).max() + 1e-9
    return np.asarray(0.5 * out * env)


def _click(length: int, rng: np.random.Generator) -> np.ndarray:
    """A 15 ms knock: noise and a 2.5 kHz ring under a fast exponential decay."""
    t = np.arange(length) / SAMPLE_RATE_HZ
    decay = np.exp(-t / 0.003)
    return 0.7 * decay * (0.6 * rng.standard_normal(length) + np.sin(2 * np.pi * 2500 * t))


def _ambience(background: str, rng: np.random.Generator) -> np.ndarray:
    n = NUM_SAMPLES
    t = np.arange(n) / SAMPLE_RATE_HZ
    if background == "grey":  # mains hum: 100 Hz and its second harmonic
        return 0.03 * np.sin(2 * np.pi * 100 * t) + 0.012 * np.sin(2 * np.pi * 200 * t)
    if background == "blue":  # wind: low-passed noise with a slow swell
        noise = rng.standard_normal(n)
        kernel = np.ones(64) / 64
        wind = np.convolve(noise, kernel, mode="same")
        return 0.12 * wind * (0.7 + 0.3 * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 6.3)))
    # crickets: a 4.5 kHz tone gated at 25 Hz
    gate = (np.sin(2 * np.pi * 25 * t + rng.uniform(0, 6.3)) > 0.3).astype(float)
    return 0.02 * gate * np.sin(2 * np.pi * 4500 * t)


# ---- picture ---------------------------------------------------------------------------------

_YY, _XX = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)


def _background(name: str) -> np.ndarray:
    """(H, W, 3) float: the colour with a gentle vertical shading, so it is not a flat card."""
    base = np.array(BACKGROUNDS[name], dtype=np.float32)
    shade = 1.0 + 0.12 * (0.5 - _YY / (HEIGHT - 1))
    return np.asarray(base[None, None, :] * shade[..., None])


def _paint(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    img[mask] = np.array(colour, dtype=np.float32)


def face_silhouette(cx: float, cy: float) -> np.ndarray:
    """(H, W) bool: the face's outline, a disc (the analysers match outlines against it)."""
    return np.asarray((_XX - cx) ** 2 + (_YY - cy) ** 2 <= FACE_RADIUS**2)


def box_silhouette(cx: float, cy: float) -> np.ndarray:
    """(H, W) bool: the box's outline, a rectangle wider than tall."""
    return np.asarray((np.abs(_XX - cx) <= BOX_HALF_W) & (np.abs(_YY - cy) <= BOX_HALF_H))


def _draw_face(img: np.ndarray, cx: float, cy: float, colour: str, opening: float) -> None:
    _paint(img, face_silhouette(cx, cy), COLOURS[colour])
    for ex in (cx - 6, cx + 6):
        _paint(img, (_XX - ex) ** 2 + (_YY - (cy - 5)) ** 2 <= 2.3**2, DARK)
    # The mouth: a dark ellipse whose height follows the speech envelope (closed = a thin line).
    half_h = 0.8 + (MOUTH_MAX_HALF_H - 0.8) * opening
    my = cy + MOUTH_OFFSET_Y
    mouth = ((_XX - cx) / MOUTH_HALF_W) ** 2 + ((_YY - my) / half_h) ** 2 <= 1.0
    _paint(img, mouth, DARK)


def _draw_ball(img: np.ndarray, cx: float, cy: float, colour: str) -> None:
    _paint(img, (_XX - cx) ** 2 + (_YY - cy) ** 2 <= BALL_RADIUS**2, COLOURS[colour])


def _draw_box(img: np.ndarray, cx: float, cy: float, colour: str) -> None:
    _paint(img, box_silhouette(cx, cy), DARK)
    inner = (np.abs(_XX - cx) <= BOX_HALF_W - 1.5) & (np.abs(_YY - cy) <= BOX_HALF_H - 1.5)
    _paint(img, inner, COLOURS[colour])
    # a label band across the box, so it reads as a product rather than a plain rectangle
    band = inner & (np.abs(_YY - cy) <= 2.5) & (np.abs(_XX - cx) <= BOX_HALF_W - 5)
    _paint(img, band, DARK)


def _slide_x(x0: float, motion: str, frame: int) -> float:
    step = {"still": 0.0, "left": -1.0, "right": 1.0}[motion] * SLIDE_PX / (NUM_FRAMES - 1)
    return x0 + step * frame


def render(scene: Scene) -> RenderedClip:
    """Draw the frames and synthesise the soundtrack of `scene` (deterministic in scene.seed)."""
    rng = np.random.default_rng(scene.seed)
    onsets = _syllable_onsets(scene, rng)
    env = syllable_envelope(onsets)
    mouth = frame_envelope(env).astype(np.float32)
    if scene.obj == "face":
        lo = FACE_RADIUS + 2 + (SLIDE_PX if scene.motion == "left" else 0)
        hi = WIDTH - FACE_RADIUS - 2 - (SLIDE_PX if scene.motion == "right" else 0)
        x0, y0 = rng.uniform(lo, hi), rng.uniform(FACE_RADIUS + 2, HEIGHT - FACE_RADIUS - 3)
    elif scene.obj == "box":
        lo = BOX_HALF_W + 2 + (SLIDE_PX if scene.motion == "left" else 0)
        hi = WIDTH - BOX_HALF_W - 2 - (SLIDE_PX if scene.motion == "right" else 0)
        x0, y0 = rng.uniform(lo, hi), rng.uniform(BOX_HALF_H + 2, HEIGHT - BOX_HALF_H - 3)
    else:
        x0, y0 = rng.uniform(BALL_RADIUS + 4, WIDTH - BALL_RADIUS - 4), float(FLOOR_Y)
    # First contact at frame c in [1.5, 2.5] or [5.5, 9.5]: then no contact falls within
    # 1.5 frames of either end of the clip, where a bounce could not be seen as a lowest point.
    first = rng.uniform(1.5, 2.5) if rng.uniform() < 0.25 else rng.uniform(5.5, 9.5)
    phase = 1.0 - first / BOUNCE_PERIOD_FRAMES
    heights = _ball_height(phase)
    bounces = _bounce_times(phase) if scene.obj == "ball" else ()

    background = _background(scene.background)
    frames = np.empty((NUM_FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    mouth_centre = np.full((NUM_FRAMES, 2), np.nan, dtype=np.float32)
    for f in range(NUM_FRAMES):
        img = background.copy()
        if scene.obj == "face":
            x = _slide_x(x0, scene.motion, f)
            _draw_face(img, x, y0, scene.colour, float(mouth[f]))
            mouth_centre[f] = (x, y0 + MOUTH_OFFSET_Y)
        elif scene.obj == "ball":
            _draw_ball(img, x0, y0 - heights[f], scene.colour)
        else:
            _draw_box(img, _slide_x(x0, scene.motion, f), y0, scene.colour)
        frames[f] = np.clip(np.round(img), 0, 255).astype(np.uint8)

    audio = _ambience(scene.background, rng)
    if scene.obj == "face":
        audio = audio + _voice(scene.syllable, env, rng)
    for bounce in bounces:
        start = int(round(bounce * SAMPLE_RATE_HZ))
        length = min(720, NUM_SAMPLES - start)
        if length > 0:
            audio[start:start + length] += _click(length, rng)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    return RenderedClip(scene=scene, prompt=prompt_for(scene), frames=frames, audio=audio,
                        mouth_open=mouth if scene.obj == "face" else np.zeros_like(mouth),
                        mouth_centre=mouth_centre,
                        syllable_onsets_s=onsets, bounce_times_s=bounces)


def render_many(seed: int, count: int) -> list[RenderedClip]:
    """`count` clips of scenes drawn from one seeded stream."""
    rng = np.random.default_rng(seed)
    return [render(sample_scene(rng)) for _ in range(count)]
