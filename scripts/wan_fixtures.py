#!/usr/bin/python3
"""Parity fixtures for the real Wan 2.1 pipeline: runs Wan 2.1's own code and writes what it gives
to tests/fixtures/wan/, which the model tests compare our C++ with (docs/wan.md).

    scripts/wan_fixtures.py WAN_CHECKOUT COMMIT    # github.com/Wan-Video/Wan2.1 at COMMIT

A tool, never run by the build or the tests: it needs Debian's python3-torch
(scripts/install-deps.sh --tools) and a checkout of the official repository, whose modules it
imports unchanged, file by file. Their package-level imports pull in libraries Debian lacks
(diffusers for the scheduler's base classes): those few names are stubbed here with what the
scheduler uses of them (a config object holding the constructor's arguments), so the arithmetic
that runs is Wan's.

Fixtures (safetensors, float32, written without the safetensors package):
- unipc.safetensors: FlowUniPCMultistepScheduler sampling a fixed analytic velocity field
  v(x, t) = sin(x) / 2 + x (t / 1000)^2 - 0.3 from seeded noise, for several step counts,
  shifts and solver orders: the grid, the integer timesteps, the sample at every step and the
  result. Keys "CASE.sigmas", "CASE.timesteps", "CASE.inputs" [steps, n], "CASE.noise", "CASE.out"
  for CASE = "s{steps}_shift{shift}_order{order}".
- state_dict.pth (torch.save of a small state dict: float32, bf16, a view into another tensor's
  storage, a transposed view, a scalar), state_dict.safetensors (the same as float32), list.pth
  (not a dict), legacy.pth (the pre-1.6 format) and cut_pickle.pth (its pickle cut in half): what
  model/pth.h reads and refuses.
- umt5.pth and umt5.safetensors: Wan's T5Encoder (wan/modules/t5.py) at a reduced size, randomly
  initialised by its own init_weights: its state dict, two padded prompts' ids, lengths and
  outputs, and its relative-position bucket of every offset from -300 to 300.
- spiece.model and tokenizer.json: a small SentencePiece model in umT5's id layout and, for some
  prompts, Wan's cleaned text and the ids with </s> (tokenizer_case says what is stubbed).
- vae.pth and vae.safetensors: Wan's WanVAE_ (wan/modules/vae.py) at dim 4 (the release: 96),
  every parameter drawn at random (its own init zeroes the attention's projection), run as its
  WanVAE wrapper runs it (the release's latent mean and 1 / std, decode clamped to [-1, 1]): a
  5-frame video and its encoded mean, 3 latent frames and their 9 decoded frames. Torch 1.13
  lacks F.scaled_dot_product_attention and Debian lacks einops: both are stubbed with the
  arithmetic vae.py asks of them (softmax(q k^T / sqrt(d)) v; its two rearrange patterns).
- generation.safetensors and generation_dit.safetensors: one whole small generation as
  wan/text2video.py's WanT2V.generate runs it (its loop, copied step for step, since the class
  itself loads the release's files): the fixtures' umT5, tokenizer and VAE with Wan's WanModel
  (wan/modules/model.py) at dim 24, 2 blocks, every parameter drawn at random; a prompt and
  Wan's negative prompt, 5 frames at 32x32, 4 UniPC steps, shift 5, guidance 5, seed 7. Its
  noise, final latents and decoded video; the DiT's state dict by the official keys. Wan's
  flash_attention is stood in for by the same attention in float32 (keys past k_lens masked);
  on the GPU Wan casts it to bf16.
- hostile_*.pth and hostile.json: hand-written pickles in torch.save's archive layout that a
  reader must refuse (hostile_pickles says which), and the words each refusal must contain.
"""
import collections
import importlib.util
import inspect
import json
import math
import os
import struct

import regex
import sys
import types
import zipfile

import torch

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "wan")


def stub_diffusers():
    """The names fm_solvers_unipc.py imports from diffusers, as far as it uses them."""

    class Config(types.SimpleNamespace):
        pass

    def register_to_config(init):
        def wrapped(self, *args, **kwargs):
            bound = inspect.signature(init).bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.config = Config(**{k: v for k, v in bound.arguments.items() if k != "self"})
            init(self, *args, **kwargs)

        return wrapped

    class ConfigMixin:
        def register_to_config(self, **kwargs):
            for k, v in kwargs.items():
                setattr(self.config, k, v)

    class SchedulerMixin:
        pass

    class SchedulerOutput(types.SimpleNamespace):
        pass

    modules = {
        "diffusers": {},
        "diffusers.configuration_utils": {"ConfigMixin": ConfigMixin, "register_to_config": register_to_config},
        "diffusers.schedulers": {},
        "diffusers.schedulers.scheduling_utils": {
            "KarrasDiffusionSchedulers": [],
            "SchedulerMixin": SchedulerMixin,
            "SchedulerOutput": SchedulerOutput,
        },
        "diffusers.utils": {"deprecate": lambda *a, **k: None, "is_scipy_available": lambda: False},
    }
    for name, names in modules.items():
        m = types.ModuleType(name)
        m.__dict__.update(names)
        sys.modules[name] = m


def load(checkout, relative, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(checkout, relative))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # later cases reuse what an earlier one loaded
    spec.loader.exec_module(module)
    return module


def write_safetensors(path, tensors, metadata):
    """The format as io/safetensors.h reads it: header length, JSON header, packed data."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(tmp, path)


def velocity(x, t):
    return torch.sin(x) / 2 + x * (t / 1000.0) ** 2 - 0.3


def unipc_cases(unipc):
    tensors = {}
    for steps, shift, order in [(1, 5.0, 2), (2, 5.0, 2), (5, 5.0, 2), (12, 3.0, 2), (50, 5.0, 2), (9, 8.0, 3)]:
        case = f"s{steps}_shift{shift:g}_order{order}"
        scheduler = unipc.FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=1,
                                                      use_dynamic_shifting=False, solver_order=order)
        scheduler.set_timesteps(steps, device="cpu", shift=shift)
        noise = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(steps))
        x, inputs = noise.clone(), []
        for t in scheduler.timesteps:  # as wan/text2video.py steps it
            inputs.append(x.flatten().clone())
            v = velocity(x, float(t))
            x = scheduler.step(v.unsqueeze(0), t, x.unsqueeze(0), return_dict=False)[0].squeeze(0)
        tensors[case + ".sigmas"] = scheduler.sigmas.to(torch.float32)
        tensors[case + ".timesteps"] = scheduler.timesteps.to(torch.float32)
        tensors[case + ".noise"] = noise
        tensors[case + ".inputs"] = torch.stack(inputs)
        tensors[case + ".out"] = x
    return tensors


def pth_cases():
    """torch.save files as the release's .pth are written (a state dict in the zip format), with a
    bf16 tensor, a view into another tensor's storage and a transposed one; the same tensors as
    float32 safetensors; a list instead of a dict; and the legacy (pre-1.6) format."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 4, generator=g)
    sd = collections.OrderedDict()
    sd["blocks.0.weight"] = torch.randn(3, 4, generator=g)
    sd["blocks.0.bias"] = torch.randn(5, generator=g).to(torch.bfloat16)
    sd["shared.rows"] = base[2:5]
    sd["shared.t"] = base.t()
    sd["scale"] = torch.tensor(2.5)
    torch.save(sd, os.path.join(here, "state_dict.pth"))
    torch.save([base], os.path.join(here, "list.pth"))
    torch.save(sd, os.path.join(here, "legacy.pth"), _use_new_zipfile_serialization=False)
    # A well-formed archive whose pickle stops halfway, as a write cut off would leave it.
    with zipfile.ZipFile(os.path.join(here, "state_dict.pth")) as z, \
            zipfile.ZipFile(os.path.join(here, "cut_pickle.pth"), "w", zipfile.ZIP_STORED) as out:
        for name in z.namelist():
            data = z.read(name)
            out.writestr(name, data[:len(data) // 2] if name.endswith("data.pkl") else data)
    return {k: v.float() for k, v in sd.items()}


def hostile_pickles():
    """Archives laid out as torch.save lays them out whose data.pkl is hand-written to attack a
    reader: a dict that holds itself, tuples nested 100 deep, dicts that each hold the one below
    twice (2^30 paths), a tensor reaching past its storage, a storage whose record is missing.
    hostile.json maps each file to the words its refusal must contain."""
    def archive(name, pickle, records=None):
        with zipfile.ZipFile(os.path.join(here, name), "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", pickle)
            for key, data in (records or {}).items():
                z.writestr("archive/data/" + key, data)
            z.writestr("archive/version", "3\n")

    def text(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    def tensor(key, numel, size):  # _rebuild_tensor_v2(storage, 0, (size,), (1,), False, {})
        return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + b"(" + text("storage") + b"ctorch\nFloatStorage\n" +
                text(key) + text("cpu") + b"K" + bytes([numel]) + b"tQ" + b"K\x00" + b"K" + bytes([size]) +
                b"\x85" + b"K\x01\x85" + b"\x89}tR")

    expected = {}
    archive("hostile_cycle.pth", b"\x80\x02}q\x00" + text("a") + b"h\x00s.")
    expected["hostile_cycle.pth"] = "a container that holds itself"
    archive("hostile_deep.pth", b"\x80\x02)" + b"\x85" * 100 + b".")
    expected["hostile_deep.pth"] = "containers nest deeper than 64"
    dag = b"\x80\x02}q\x00"
    for i in range(1, 31):
        dag += b"}(" + text("a") + b"h" + bytes([i - 1]) + text("b") + b"h" + bytes([i - 1]) + b"uq" + bytes([i])
    archive("hostile_dag.pth", dag + b".")
    expected["hostile_dag.pth"] = "more than 4194304 entries"
    floats = struct.pack("<2f", 1.0, 2.0)
    archive("hostile_past.pth", b"\x80\x02}(" + text("w") + tensor("0", 2, 4) + b"u.", {"0": floats})
    expected["hostile_past.pth"] = "a tensor that reaches past its storage"
    archive("hostile_record.pth", b"\x80\x02}(" + text("w") + tensor("9", 2, 2) + b"u.", {"0": floats})
    expected["hostile_record.pth"] = "the archive has no record data/9"
    with open(os.path.join(here, "hostile.json"), "w") as f:
        json.dump(expected, f, indent=1)


def umt5_case(checkout):
    """Wan's T5Encoder (wan/modules/t5.py, umT5's shape: no shared position bias) at a reduced
    size with its own random initialisation, on two padded prompts (150 and 7 real tokens of 160,
    so the logarithmic buckets and their clamp are reached); its state dict as torch.save writes
    it, and its outputs and bucket table."""
    package = types.ModuleType("wanmods")
    package.__path__ = []
    tokenizers = types.ModuleType("wanmods.tokenizers")
    tokenizers.HuggingfaceTokenizer = None  # t5.py imports it; the encoder never uses it
    sys.modules.update({"wanmods": package, "wanmods.tokenizers": tokenizers})
    # T5EncoderModel's default argument asks for the current CUDA device when the class is
    # defined; Debian's torch has no CUDA, so it gets the CPU for that one call.
    current_device, torch.cuda.current_device = torch.cuda.current_device, lambda: "cpu"
    try:
        t5 = load(checkout, "wan/modules/t5.py", "wanmods.t5")
    finally:
        torch.cuda.current_device = current_device
    torch.manual_seed(3)
    model = t5.T5Encoder(vocab=64, dim=32, dim_attn=32, dim_ffn=48, num_heads=4, num_layers=2, num_buckets=32,
                         shared_pos=False, dropout=0.1).eval()
    torch.save(model.state_dict(), os.path.join(here, "umt5.pth"))
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(2, 64, (2, 160), generator=g)
    lens = torch.tensor([150, 7])
    mask = torch.zeros(2, 160, dtype=torch.long)
    for i, n in enumerate(lens):
        ids[i, n - 1] = 1  # </s>
        ids[i, n:] = 0     # <pad>
        mask[i, :n] = 1
    with torch.no_grad():
        out = model(ids, mask)
    rel = torch.arange(-300, 301).unsqueeze(0)
    buckets = model.blocks[0].pos_embedding._relative_position_bucket(rel)[0]
    return {"umt5.ids": ids.float(), "umt5.lens": lens.float(), "umt5.out": out,
            "umt5.relative": rel[0].float(), "umt5.buckets": buckets.float()}


TOKENIZER_PROMPTS = [
    "A cat walks on the grass, realistic style.",
    "  Two   dogs\tplay &amp;amp; run\n on a beach at sunset  ",
    "a red circle &lt;moving&gt; left &#x41;&#66; &quot;fast&quot;",
    "静态，细节模糊不清 with words the model never saw: zyzzyva quixotic",
    "\u201cit\u2019s\u201d\u00a0a\u3000cat\uff0c\uff21 &nbsp;done",
    "",
]


def tokenizer_case(checkout):
    """A small SentencePiece model in umT5's id layout (pad 0, </s> 1, unk 2; no <s>), trained here,
    and what Wan's cleaning (wan/modules/tokenizers.py's basic_clean then whitespace_clean) and
    SentencePiece's own encoder make of some prompts, with </s> appended as the tokenizer does.
    Debian has neither ftfy nor transformers: ftfy.fix_text is stood in for by the two of its
    default fixes that these prompts meet (uncurl_quotes: curly quotes made straight;
    fix_character_width: fullwidth ASCII forms made ASCII, as ftfy documents them), and
    AutoTokenizer is not used. The SentencePiece model is trained once and kept (training is not
    reproducible byte for byte)."""
    import sentencepiece as spm
    def fix_text(text):
        text = "".join(chr(ord(c) - 0xFF01 + 0x21) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in text)
        return regex.sub("[\u02bc\u2018-\u201b]", "'", regex.sub("[\u201c-\u201f]", '"', text))

    sys.modules["ftfy"] = types.SimpleNamespace(fix_text=fix_text)
    sys.modules["transformers"] = types.SimpleNamespace(AutoTokenizer=None)
    tokenizers = load(checkout, "wan/modules/tokenizers.py", "wan_tokenizers")
    model = os.path.join(here, "spiece.model")
    corpus = os.path.join(here, "corpus.tmp")
    with open(corpus, "w") as f:
        for i in range(200):
            f.write(f"a cat walks on the grass {i} times, dogs play and run on a beach at sunset, "
                    "a red circle moving left fast, realistic style\n")
    if not os.path.exists(model):
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(here, "spiece"), vocab_size=60,
                                       model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                       character_coverage=1.0, minloglevel=2)
        os.remove(os.path.join(here, "spiece.vocab"))
    os.remove(corpus)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(here, "spiece.model"))
    cases = []
    for prompt in TOKENIZER_PROMPTS:
        clean = tokenizers.whitespace_clean(tokenizers.basic_clean(prompt))
        cases.append({"prompt": prompt, "clean": clean, "ids": sp.encode(clean) + [sp.eos_id()]})
    with open(os.path.join(here, "tokenizer.json"), "w") as f:
        json.dump(cases, f, ensure_ascii=False, indent=2)


def vae_case(checkout):
    einops = types.ModuleType("einops")

    def rearrange(x, pattern, **sizes):
        if pattern == "b c t h w -> (b t) c h w":
            b, c, t, h, w = x.shape
            return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        if pattern.replace(" ", "") == "(bt)chw->bcthw":
            bt, c, h, w = x.shape
            t = sizes["t"]
            return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)
        raise NotImplementedError(pattern)

    einops.rearrange = rearrange
    sys.modules["einops"] = einops
    if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        def sdpa(q, k, v):
            return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, -1) @ v
        torch.nn.functional.scaled_dot_product_attention = sdpa
    vae = load(checkout, "wan/modules/vae.py", "wan_vae")
    model = vae.WanVAE_(dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                        temperal_downsample=[False, True, True], dropout=0.0).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    torch.save(model.state_dict(), os.path.join(here, "vae.pth"))
    mean = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
            0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
    std = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
           3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]
    mean, std = torch.tensor(mean), torch.tensor(std)
    scale = [mean, 1.0 / std]
    video = torch.rand(1, 3, 5, 16, 24, generator=g) * 2 - 1
    latents = torch.randn(1, 16, 3, 2, 3, generator=g)
    with torch.no_grad():
        mu = model.encode(video, scale)
        decoded = model.decode(latents, scale).clamp_(-1, 1)
    return {"video": video[0], "mu": mu[0], "latents": latents[0], "decoded": decoded[0]}


GENERATION = {"prompt": "a cat walks on the grass at sunset", "frames": 5, "height": 32, "width": 32,
              "steps": 4, "shift": 5.0, "guidance": 5.0, "seed": 7}


def flash_attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0., softmax_scale=None, q_scale=None,
                    causal=False, window_size=(-1, -1), deterministic=False, dtype=torch.bfloat16,
                    version=None):
    """wan/modules/attention.py's flash_attention in float32: q, k, v [B, L, heads, C]."""
    assert not causal and tuple(window_size) == (-1, -1)
    if q_scale is not None:
        q = q * q_scale
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    logits = torch.einsum("bqnc,bknc->bnqk", q.float(), k.float()) * scale
    if k_lens is not None:
        masked = torch.arange(k.shape[1])[None, :] >= k_lens[:, None]
        logits = logits.masked_fill(masked[:, None, None, :], float("-inf"))
    return torch.einsum("bnqk,bknc->bqnc", logits.softmax(-1), v.float()).type_as(q)


def generation_case(checkout, unipc):
    """Needs umt5.pth, spiece.model and vae.pth written first."""
    import sentencepiece as spm
    sys.modules["diffusers.models"] = types.ModuleType("diffusers.models")
    sys.modules["diffusers.models.modeling_utils"] = types.SimpleNamespace(ModelMixin=torch.nn.Module)
    sys.modules["wanmods.attention"] = types.SimpleNamespace(flash_attention=flash_attention)
    model_py = load(checkout, "wan/modules/model.py", "wanmods.model")
    t5 = sys.modules["wanmods.t5"]
    tokenizers = sys.modules["wan_tokenizers"]
    if "easydict" not in sys.modules:  # Debian lacks it: a dict whose keys are attributes
        class EasyDict(dict):
            __getattr__, __setattr__ = dict.__getitem__, dict.__setitem__
        sys.modules["easydict"] = types.SimpleNamespace(EasyDict=EasyDict)
    shared = load(checkout, "wan/configs/shared_config.py", "wan_shared_config")
    vae = sys.modules["wan_vae"]

    g = torch.Generator().manual_seed(6)
    dit = model_py.WanModel(model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=24, ffn_dim=40,
                            freq_dim=16, text_dim=32, out_dim=16, num_heads=2, num_layers=2, window_size=(-1, -1),
                            qk_norm=True, cross_attn_norm=True, eps=1e-6).eval()
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            else:
                p.copy_((1.0 if name.endswith("norm_q.weight") or name.endswith("norm_k.weight")
                         or name.endswith("norm3.weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
    encoder = t5.T5Encoder(vocab=64, dim=32, dim_attn=32, dim_ffn=48, num_heads=4, num_layers=2, num_buckets=32,
                           shared_pos=False, dropout=0.1).eval()
    encoder.load_state_dict(torch.load(os.path.join(here, "umt5.pth")))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(here, "spiece.model"))
    autoencoder = vae.WanVAE_(dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                              temperal_downsample=[False, True, True], dropout=0.0).eval()
    autoencoder.load_state_dict(torch.load(os.path.join(here, "vae.pth")))

    def text_encoder(text):  # WanT2V's T5EncoderModel: tokenizer (clean='whitespace'), encoder, cut
        ids = sp.encode(tokenizers.whitespace_clean(tokenizers.basic_clean(text)))[:511] + [sp.eos_id()]
        padded = torch.zeros(1, 512, dtype=torch.long)
        padded[0, :len(ids)] = torch.tensor(ids)
        mask = (padded > 0).long()
        mask[0, :len(ids)] = 1
        return [encoder(padded, mask)[0, :len(ids)]]

    c = GENERATION
    target_shape = (16, (c["frames"] - 1) // 4 + 1, c["height"] // 8, c["width"] // 8)
    seq_len = math.ceil((target_shape[2] * target_shape[3]) / (2 * 2) * target_shape[1])
    seed_g = torch.Generator().manual_seed(c["seed"])
    with torch.no_grad():
        context = text_encoder(c["prompt"])
        context_null = text_encoder(shared.wan_shared_cfg.sample_neg_prompt)
        noise = [torch.randn(*target_shape, dtype=torch.float32, generator=seed_g)]
        # The loop of WanT2V.generate, sample_solver='unipc'.
        sample_scheduler = unipc.FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=1,
                                                             use_dynamic_shifting=False)
        sample_scheduler.set_timesteps(c["steps"], device="cpu", shift=c["shift"])
        latents = noise
        arg_c = {"context": context, "seq_len": seq_len}
        arg_null = {"context": context_null, "seq_len": seq_len}
        for t in sample_scheduler.timesteps:
            timestep = torch.stack([t])
            cond = dit(latents, t=timestep, **arg_c)[0]
            uncond = dit(latents, t=timestep, **arg_null)[0]
            noise_pred = uncond + c["guidance"] * (cond - uncond)
            temp_x0 = sample_scheduler.step(noise_pred.unsqueeze(0), t, latents[0].unsqueeze(0),
                                            return_dict=False, generator=seed_g)[0]
            latents = [temp_x0.squeeze(0)]
        mean = torch.tensor([-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                             0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921])
        std = torch.tensor([2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                            3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160])
        video = autoencoder.decode(latents[0].unsqueeze(0), [mean, 1.0 / std]).clamp_(-1, 1)[0]
    write_safetensors(os.path.join(here, "generation_dit.safetensors"), dit.state_dict(),
                      {"made_by": "scripts/wan_fixtures.py"})
    return {"noise": noise[0], "cond": context[0], "uncond": context_null[0], "latents": latents[0],
            "video": video}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    checkout, commit = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    stub_diffusers()
    unipc = load(checkout, "wan/utils/fm_solvers_unipc.py", "wan_fm_solvers_unipc")
    os.makedirs(here, exist_ok=True)
    meta = {"source": "github.com/Wan-Video/Wan2.1", "commit": commit, "torch": torch.__version__,
            "made_by": "scripts/wan_fixtures.py"}
    write_safetensors(os.path.join(here, "unipc.safetensors"), unipc_cases(unipc), meta)
    write_safetensors(os.path.join(here, "state_dict.safetensors"), pth_cases(), meta)
    write_safetensors(os.path.join(here, "umt5.safetensors"), umt5_case(checkout), meta)
    write_safetensors(os.path.join(here, "vae.safetensors"), vae_case(checkout), meta)
    tokenizer_case(checkout)
    write_safetensors(os.path.join(here, "generation.safetensors"), generation_case(checkout, unipc),
                      dict(meta, **{k: str(v) for k, v in GENERATION.items()}))
    hostile_pickles()
    print("wrote", here)


if __name__ == "__main__":
    main()
