"""The MIDINet-style conditional GAN that writes a melody one bar at a time.

Shapes: a bar is (1, 16 steps, BAR_WIDTH columns) — see `pianoroll`. The condition
`y` joins the emotion (one-hot over Q1–Q4 plus "unknown", for unlabelled songs and
condition dropout), the bar's chord (one-hot, 25: 24 triads and no-chord), the key
(one-hot, 24), and the bar's place in the song form: its position in a 4-bar phrase
(one-hot, 4), whether it ends a phrase (a cadence), and whether it restates a bar of an
earlier phrase, and two song-level controls, the melody's register and its density (see
`generator_numpy.song_controls`), through which the composer asks for an emotion's register and
pace. The conditioner CNN reads the previous `prev_bars` bars and, when the bar
restates one, the bar it restates (the "reference"), and hands the generator its features
at 2, 4, 8 and 16 steps, as in MIDINet (Yang, Chou & Yang, ISMIR 2017). A learned copy path
adds the reference bar to the output scores, so a restated phrase can follow its model note
for note where real songs do, and the network decides where it departs from it. Unlike the prototype, every BatchNorm of the generator is
created in `__init__`, so it is trained and saved; the discriminator uses LayerNorm (see there).

The generator's pitch-or-rest columns go through a straight-through Gumbel-softmax
and its onset column through a straight-through Bernoulli, so the discriminator sees
hard one-hot bars like the real ones while gradients still flow. A pitch change always
starts a note in real bars, so the generator's onset column is forced on there too;
otherwise the discriminator spots pitch changes without onsets and the generator learns
to put an onset on every step (we saw 8–12 onsets per bar against 4.6 in the data).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from .pianoroll import BAR_WIDTH, ONSET, REST, STEPS_PER_BAR

N_EMOTIONS = 5
UNKNOWN_EMOTION = 4
N_CHORDS = 25
N_KEYS = 24
#: Form features: phrase position one-hot (4), phrase end, restatement.
N_FORM = 6
#: Song-level controls: register (mean melody pitch) and density (onsets per bar), normalised
#: (`generator_numpy.song_controls`); a third, the melody's major/minor lean, with `train gan
#: --lean-control` (LEAN_CONTROLS). Each checkpoint records how many it reads.
N_CONTROLS = 2
LEAN_CONTROLS = 3
PHRASE_BARS = 4
COPY_SCALE = 5.0
COPY_INIT = 2.0


@dataclass(frozen=True)
class GanDims:
    """Network dimensions, stored in every checkpoint so `load_generator` can rebuild the model."""

    z_dim: int = 100
    width: int = BAR_WIDTH
    steps: int = STEPS_PER_BAR
    n_emotions: int = N_EMOTIONS
    n_chords: int = N_CHORDS
    n_keys: int = N_KEYS
    n_form: int = N_FORM
    n_controls: int = N_CONTROLS
    reference: bool = True
    #: "signed": the reference's onsets push the onset score up where it has one and down where it
    #: holds a note, the weights are learned at COPY_SCALE times the learning rate and start at
    #: COPY_INIT; "plain": the first form-aware networks' copy path (onsets only push up).
    copy_mode: str = "signed"
    prev_bars: int = 2
    g_hidden: int = 1024
    g_channels: int = 128
    cond_channels: int = 16
    d_fm_channels: int = 14
    d_channels: int = 77
    d_hidden: int = 1024
    #: Hidden width of the note head (`note_head`), which draws the notes step by step from the
    #: generator's scores; 0: no head, each step drawn on its own (every generator before 0.3).
    note_head: int = 0

    @property
    def y_dim(self) -> int:
        return self.n_emotions + self.n_chords + self.n_keys + self.n_form + self.n_controls

    @property
    def cond_inputs(self) -> int:
        """Bars the conditioner reads: the previous ones, plus the reference bar if the network has one."""
        return self.prev_bars + int(self.reference)


def _join(h: torch.Tensor, y: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
    """Concatenate the condition vector, broadcast over the feature map, and any conditioner features."""
    yb = y[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
    return torch.cat([h, yb, *extra], dim=1)


class Conditioner(nn.Module):
    """Reads the previous bars: features at 16, 8, 4 and 2 steps."""

    def __init__(self, d: GanDims) -> None:
        super().__init__()
        c = d.cond_channels
        self.squash = nn.Sequential(nn.Conv2d(d.cond_inputs, c, (1, d.width)), nn.BatchNorm2d(c), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, (2, 1), stride=(2, 1)), nn.BatchNorm2d(c), nn.LeakyReLU(0.2)) for _ in range(3)
        )

    def forward(self, prev: torch.Tensor) -> list[torch.Tensor]:
        """`prev`: (B, cond_inputs, 16, width), the previous bars (most recent first), then the reference."""
        h16 = self.squash(prev)
        h8 = self.down[0](h16)
        h4 = self.down[1](h8)
        h2 = self.down[2](h4)
        return [h2, h4, h8, h16]


class Generator(nn.Module):
    """[z, y] → FC → FC → 2 steps, then three transposed convolutions double the steps to 16
    and a final one spans the pitch axis; y and the conditioner join at every stage."""

    def __init__(self, d: GanDims) -> None:
        super().__init__()
        self.d = d
        ch = d.g_channels
        self.fc1 = nn.Sequential(nn.Linear(d.z_dim + d.y_dim, d.g_hidden), nn.BatchNorm1d(d.g_hidden), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(d.g_hidden + d.y_dim, ch * 2), nn.BatchNorm1d(ch * 2), nn.ReLU())
        joined = ch + d.y_dim + d.cond_channels
        self.up = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(joined, ch, (2, 1), stride=(2, 1)), nn.BatchNorm2d(ch), nn.ReLU()) for _ in range(3)
        )
        self.out = nn.ConvTranspose2d(joined, 1, (1, d.width))
        self.conditioner = Conditioner(d)
        if d.reference:
            #: Copy weights for the reference bar's pitch, rest and onset columns; they grow as far
            #: as the data's restatements are literal.
            self.copy = nn.Parameter(torch.full((3,), COPY_INIT / COPY_SCALE) if d.copy_mode == "signed" else torch.zeros(3))
        if d.note_head:
            self.head = NoteHeadNet(d.note_head)

    def logits(self, z: torch.Tensor, y: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Raw scores (B, 1, 16, width). `prev` holds the previous bars and, last, the reference bar."""
        c2, c4, c8, c16 = self.conditioner(prev)
        h = self.fc1(torch.cat([z, y], 1))
        h = self.fc2(torch.cat([h, y], 1)).view(-1, self.d.g_channels, 2, 1)
        for stage, cond in zip(self.up, (c2, c4, c8)):
            h = stage(_join(h, y, cond))
        out = self.out(_join(h, y, c16))
        if self.d.reference:
            ref = prev[:, -1:]
            if self.d.copy_mode == "signed":
                w = COPY_SCALE * self.copy
                sounding = 1 - ref[..., REST : REST + 1]
                out = out + torch.cat([ref[..., :REST] * w[0], ref[..., REST : REST + 1] * w[1], (2 * ref[..., ONSET:] - 1) * sounding * w[2]], -1)
            else:
                w = torch.cat([self.copy[0].expand(REST), self.copy[1:]])
                out = out + ref * w
        return out

    def forward(self, z: torch.Tensor, y: torch.Tensor, prev: torch.Tensor, tau: float = 1.0, with_logits: bool = False) -> Any:
        """A hard one-hot bar with straight-through gradients, shaped like the real training bars
        (and, with `with_logits`, the raw scores it was drawn from)."""
        lg = self.logits(z, y, prev)
        bar = self._sample(lg, tau)
        return (bar, lg) if with_logits else bar

    @staticmethod
    def _sample(lg: torch.Tensor, tau: float) -> torch.Tensor:
        pitch_logits = lg[..., : REST + 1]
        soft = F.softmax(pitch_logits / tau, dim=-1)
        gumbel = -torch.log(-torch.log(torch.rand_like(soft).clamp_(1e-9, 1 - 1e-9)))
        hard = F.one_hot((pitch_logits / tau + gumbel).argmax(-1), REST + 1).to(soft.dtype)
        pitch = hard - soft.detach() + soft
        p_on = torch.sigmoid(lg[..., ONSET : ONSET + 1])
        on_hard = (torch.rand_like(p_on) < p_on).to(p_on.dtype)
        onset = on_hard - p_on.detach() + p_on
        same = (pitch[..., 1:, :] * pitch[..., :-1, :]).sum(-1, keepdim=True)
        changed = torch.cat([torch.zeros_like(same[..., :1, :]), 1 - same], dim=-2)
        onset = onset + changed * (1 - onset)
        return torch.cat([pitch, onset * (1 - pitch[..., REST : REST + 1])], dim=-1)


class Discriminator(nn.Module):
    """[x, y] → conv over the whole pitch axis (the feature-matching layer) → conv → FC → FC.

    MIDINet puts BatchNorm in the discriminator too. Because real and generated bars go
    through it in separate batches, BatchNorm right before the linear read-out gives every
    batch the same mean score: D(x) and D(G(z)) sit at the same value whatever the input
    (we measured exactly that: 0.45 and 0.45, even for time-shuffled real bars). LayerNorm
    normalises each sample on its own and has no such blind spot.

    The condition enters the first layer as extra columns beside the bar, not as 29 full
    feature maps: broadcast over all 50 columns it would outweigh the bar's two or three
    active cells a hundredfold, and the discriminator would barely see the music.
    """

    def __init__(self, d: GanDims) -> None:
        super().__init__()
        self.d_reference = d.reference
        self.fm_conv = nn.Conv2d(1 + int(d.reference), d.d_fm_channels, (2, d.width + d.y_dim), stride=(2, 1))
        self.conv = nn.Sequential(nn.Conv2d(d.d_fm_channels + d.y_dim, d.d_channels, (4, 1), stride=(2, 1)), nn.LayerNorm([d.d_channels, (d.steps // 2 - 4) // 2 + 1, 1]), nn.LeakyReLU(0.2))
        flat = d.d_channels * ((d.steps // 2 - 4) // 2 + 1)
        self.fc1 = nn.Sequential(nn.Linear(flat + d.y_dim, d.d_hidden), nn.LayerNorm(d.d_hidden), nn.LeakyReLU(0.2))
        self.fc2 = nn.Linear(d.d_hidden + d.y_dim, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (logit, feature-matching features). With a reference bar (B, 1, 16, width) the
        discriminator sees the bar beside the one it restates, so it can judge how a real restatement varies."""
        if self.d_reference:
            x = torch.cat([x, ref if ref is not None else torch.zeros_like(x)], dim=1)
        xy = torch.cat([x, y[:, None, None, :].expand(-1, x.shape[1], x.shape[2], -1)], dim=3)
        fm = F.leaky_relu(self.fm_conv(xy), 0.2)
        h = self.conv(_join(fm, y)).flatten(1)
        h = self.fc1(torch.cat([h, y], 1))
        return self.fc2(torch.cat([h, y], 1)).squeeze(1), fm


class NoteHeadNet(nn.Module):
    """`note_head.NumpyNoteHead` in torch, for training: embeddings of the categorical inputs summed
    with a linear map of the dense ones, two ReLU layers, and the head's outputs. The last layer
    starts at zero, so an untrained head plays the generator's scores as they are."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        from .note_head import N_CATEGORY_ROWS, N_DENSE, N_OUT

        self.embed = nn.Parameter(torch.randn(N_CATEGORY_ROWS, hidden) * 0.05)
        self.dense = nn.Linear(N_DENSE, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, N_OUT)
        nn.init.zeros_(self.fc3.weight)
        nn.init.zeros_(self.fc3.bias)

    def forward(self, cats: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """The head's outputs for rows of categorical indices (N, len(CATEGORIES)) and dense inputs.
        The embeddings are summed as a multi-hot product, not gathered: the gradient of a gather
        adds rows in an order that varies between runs, and a resumed run must equal an uninterrupted one."""
        multi = F.one_hot(cats, self.embed.shape[0]).sum(-2).to(self.embed.dtype)
        h = F.relu(multi @ self.embed + self.dense(dense))
        return self.fc3(F.relu(self.fc2(h)))

    @staticmethod
    def logits(out: torch.Tensor, scores: torch.Tensor, last: torch.Tensor, held: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`note_head.head_logits` in torch, over rows: (N, REST + 1) pitch-or-rest scores and (N,) restrike scores."""
        from .note_head import HOLD, N_REL, REST_BIAS, RESTRIKE, SCALE, SPAN

        weight = F.softplus(out[:, SCALE] + 0.5413)
        rel = (torch.arange(REST, device=out.device)[None, :] - last[:, None]).clamp(-SPAN, SPAN) + SPAN
        pitch = weight[:, None] * scores[:, :REST] + torch.gather(out[:, :N_REL], 1, rel) * (last[:, None] >= 0).float()
        pitch = pitch + F.one_hot(held.clamp(max=REST - 1), REST).float() * ((held != REST).float() * out[:, HOLD])[:, None]
        rest = weight * scores[:, REST] + out[:, REST_BIAS]
        return torch.cat([pitch, rest[:, None]], 1), scores[:, ONSET] + out[:, RESTRIKE]


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions and linears, N(1, 0.02) for BatchNorm scales, as in DCGAN/MIDINet
    (the copy weights keep their own start)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def condition(emotion: torch.Tensor, chord: torch.Tensor, d: GanDims, key: torch.Tensor | None = None, form: torch.Tensor | None = None, controls: torch.Tensor | None = None) -> torch.Tensor:
    """Emotion, chord and key indices (one-hot), the (B, N_FORM) form features and the (B, N_CONTROLS) song controls joined into y."""
    parts = [F.one_hot(emotion, d.n_emotions), F.one_hot(chord, d.n_chords)]
    if d.n_keys:
        parts.append(F.one_hot(key if key is not None else torch.zeros_like(chord), d.n_keys))
    if d.n_form:
        parts.append(form if form is not None else torch.zeros(len(chord), d.n_form))
    if d.n_controls:
        parts.append(controls if controls is not None else torch.zeros(len(chord), d.n_controls))
    return torch.cat([p.float() for p in parts], 1)


def form_features(pos: torch.Tensor, phrase_end: torch.Tensor, restate: torch.Tensor) -> torch.Tensor:
    """(B, N_FORM): position in the 4-bar phrase (one-hot; all zero where unknown, -1), phrase end, restatement."""
    onehot = F.one_hot(pos.clamp(min=0), PHRASE_BARS).float() * (pos >= 0).float()[:, None]
    return torch.cat([onehot, phrase_end.float()[:, None], restate.float()[:, None]], 1)


def tiny_dims() -> GanDims:
    """A very small network for tests: same code paths, a fraction of the compute."""
    return GanDims(z_dim=16, g_hidden=64, g_channels=16, cond_channels=4, d_fm_channels=4, d_channels=8, d_hidden=32)


#: What a checkpoint written before the form-aware network means by a missing field.
_LEGACY = {"n_emotions": 4, "n_keys": 0, "n_form": 0, "n_controls": 0, "reference": False, "copy_mode": "plain"}


def dims_from_dict(raw: dict[str, Any]) -> GanDims:
    """Rebuild dimensions from a checkpoint; fields it predates take their old meaning, not today's default."""
    fields = GanDims.__dataclass_fields__
    return GanDims(**(_LEGACY | {k: v for k, v in raw.items() if k in fields}))


def load_generator_module(path: Any) -> tuple[Generator, GanDims, dict[str, Any]]:
    """The eval-mode `Generator` of a checkpoint, its dimensions (rebuilt from the file, as whisper's
    `load_model` does) and the checkpoint's payload."""
    from ..checkpoints import load_checkpoint
    from ..errors import CheckpointError

    payload = load_checkpoint(path, "generator")
    try:
        dims = dims_from_dict(payload["dims"])
        model = Generator(dims)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: generator checkpoint does not match its declared dimensions ({str(exc).splitlines()[0][:100]})") from None
    return model.eval(), dims, payload
