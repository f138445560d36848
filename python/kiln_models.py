"""The seed models kiln is measured against, as PyTorch modules with deterministic random weights.

Each builder returns a model in eval mode. VGG16 and ResNet-50 come from torchvision; UNet,
DeepLabV3+ (on torchvision's ResNet-50), YOLOv5s (v6.0 layout) and the small MNIST-style CNN are
written out here. Weights come from torch.manual_seed(seed); BatchNorm running statistics are
calibrated on random data and then perturbed, so every BN layer does real, non-identity work
while activations stay in a sane range through 50+ layers (a BN with arbitrary statistics
either kills ReLUs wholesale or blows activations up, and then the comparison proves little).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

# ---------------------------------------------------------------- UNet (Ronneberger et al. 2015)


class DoubleConv(nn.Sequential):
    """(conv 3x3 -> BN -> ReLU) twice. Padded, so skip connections need no cropping."""

    def __init__(self, cin, cout):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Four 2x2 max-pool downsamplings, four 2x2 transposed-conv upsamplings with skip concat.

    Input height and width must be multiples of 16."""

    def __init__(self, in_channels=3, num_classes=2, base=64):
        super().__init__()
        widths = [base * (2 ** i) for i in range(5)]  # 64 128 256 512 1024
        self.inc = DoubleConv(in_channels, widths[0])
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1]) for i in range(4))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(4))
        )
        self.dec = nn.ModuleList(DoubleConv(widths[i] * 2, widths[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


# ---------------------------------------------------------------- DeepLabV3+ (Chen et al. 2018)


def _conv_bn_relu(cin, cout, k=1, dilation=1):
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Module):
    """Image-level branch: global average, 1x1 conv, then bilinear back to the feature size."""

    def __init__(self, cin, cout):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = _conv_bn_relu(cin, cout)

    def forward(self, x):
        y = self.proj(self.pool(x))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, cin, cout=256, rates=(6, 12, 18)):
        super().__init__()
        branches = [_conv_bn_relu(cin, cout)]
        branches += [_conv_bn_relu(cin, cout, 3, r) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(_conv_bn_relu(cout * len(branches), cout), nn.Dropout(0.5))

    def forward(self, x):
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class DeepLabV3Plus(nn.Module):
    """ResNet-50 encoder at output stride 16, ASPP, decoder fed by layer1 (stride 4) features."""

    def __init__(self, num_classes=21):
        super().__init__()
        r = torchvision.models.resnet50(weights=None,
                                        replace_stride_with_dilation=[False, False, True])
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        self.aspp = ASPP(2048, 256)
        self.low_level = _conv_bn_relu(256, 48)
        self.decoder = nn.Sequential(
            _conv_bn_relu(256 + 48, 256, 3),
            _conv_bn_relu(256, 256, 3),
            nn.Conv2d(256, num_classes, 1),
        )

    def forward(self, x):
        size = x.shape[-2:]
        low = self.layer1(self.stem(x))
        high = self.aspp(self.layer4(self.layer3(self.layer2(low))))
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([high, self.low_level(low)], dim=1))
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------- YOLOv5 (v6.0 layout)


class Conv(nn.Module):
    """Conv2d (no bias, 'same' padding for odd k) + BN + SiLU: YOLOv5's basic block."""

    def __init__(self, cin, cout, k=1, s=1, p=None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, cin, cout, shortcut=True):
        super().__init__()
        self.cv1 = Conv(cin, cout, 1)
        self.cv2 = Conv(cout, cout, 3)
        self.add = shortcut and cin == cout

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block with three convs: half the channels go through n bottlenecks, half bypass."""

    def __init__(self, cin, cout, n=1, shortcut=True):
        super().__init__()
        hidden = cout // 2
        self.cv1 = Conv(cin, hidden, 1)
        self.cv2 = Conv(cin, hidden, 1)
        self.cv3 = Conv(2 * hidden, cout, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], dim=1))


class SPPF(nn.Module):
    """Three chained 5x5 max pools, equivalent to SPP's parallel 5/9/13 pools but cheaper."""

    def __init__(self, cin, cout, k=5):
        super().__init__()
        hidden = cin // 2
        self.cv1 = Conv(cin, hidden, 1)
        self.cv2 = Conv(hidden * 4, cout, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat([x, y1, y2, self.m(y2)], dim=1))


YOLO_ANCHORS = (
    (10, 13, 16, 30, 33, 23),  # P3/8
    (30, 61, 62, 45, 59, 119),  # P4/16
    (116, 90, 156, 198, 373, 326),  # P5/32
)


class Detect(nn.Module):
    """1x1 conv per scale. decode=True gives YOLOv5's export-mode output [N, sum(3*ny*nx), 5+nc]:
    sigmoid, xy = (2s - 0.5 + grid) * stride, wh = (2s)^2 * anchor. decode=False returns the three
    raw conv outputs [N, 3*(5+nc), ny, nx]."""

    def __init__(self, nc, channels, strides=(8, 16, 32), anchors=YOLO_ANCHORS):
        super().__init__()
        self.nc, self.no, self.na = nc, nc + 5, len(anchors[0]) // 2
        self.strides = strides
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
        # Anchors in pixels, [scale, anchor, 2].
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(len(anchors), -1, 2))
        self.decode = True
        # Grids are cached per feature size, like YOLOv5: traced exports then see them as constants.
        self._grids = {}
        for conv, s in zip(self.m, strides):  # YOLOv5's prior: ~8 objects per 640 image, rare classes
            b = conv.bias.detach().view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            b[:, 5:] += math.log(0.6 / (nc - 0.99))

    def _grid(self, i, ny, nx, device, dtype):
        # Under torch.compile the grids are made in the graph, never cached: a cached tensor
        # made inside a CUDA-graph replay is overwritten by the next replay (cudagraph trees
        # refuse to read it), and the compiler folds the made grids into constants anyway.
        # torch.compiler.is_compiling from torch 2.3, torch._dynamo's before; neither in 1.x
        probe = (getattr(getattr(torch, "compiler", None), "is_compiling", None)
                 or getattr(getattr(torch, "_dynamo", None), "is_compiling", None))
        compiling = bool(probe and probe())
        key = (i, ny, nx, str(device), dtype)
        if compiling or key not in self._grids:
            yv, xv = torch.meshgrid(torch.arange(ny, device=device, dtype=torch.float32),
                                    torch.arange(nx, device=device, dtype=torch.float32), indexing="ij")
            grid = torch.stack((xv, yv), 2).expand(1, self.na, ny, nx, 2) - 0.5
            anchor = self.anchors[i].to(device).view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2)
            made = (grid.contiguous().to(dtype), anchor.contiguous().clone().to(dtype))
            if compiling:
                return made
            self._grids[key] = made
        return self._grids[key]

    def forward(self, xs):
        if not self.decode:
            return tuple(conv(x) for conv, x in zip(self.m, xs))
        z = []
        for i, (conv, x) in enumerate(zip(self.m, xs)):
            x = conv(x)
            bs, _, ny, nx = x.shape
            x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            grid, anchor = self._grid(i, int(ny), int(nx), x.device, x.dtype)
            y = x.sigmoid()
            xy = (y[..., 0:2] * 2 + grid) * self.strides[i]
            wh = (y[..., 2:4] * 2) ** 2 * anchor
            y = torch.cat((xy, wh, y[..., 4:]), -1)
            z.append(y.view(bs, -1, self.no))
        return torch.cat(z, 1)


def _width(c, multiple):
    return int(math.ceil(c * multiple / 8) * 8)


def _depth(n, multiple):
    return max(round(n * multiple), 1) if n > 1 else n


class YOLOv5(nn.Module):
    """YOLOv5 v6.0: CSP-Darknet backbone with SPPF, PANet neck, 3-scale Detect head.

    Input height and width must be multiples of 32."""

    def __init__(self, nc=80, width=0.50, depth=0.33):
        super().__init__()
        w = lambda c: _width(c, width)  # noqa: E731
        d = lambda n: _depth(n, depth)  # noqa: E731
        # backbone
        self.b0 = Conv(3, w(64), 6, 2, 2)  # P1/2
        self.b1 = Conv(w(64), w(128), 3, 2)  # P2/4
        self.b2 = C3(w(128), w(128), d(3))
        self.b3 = Conv(w(128), w(256), 3, 2)  # P3/8
        self.b4 = C3(w(256), w(256), d(6))
        self.b5 = Conv(w(256), w(512), 3, 2)  # P4/16
        self.b6 = C3(w(512), w(512), d(9))
        self.b7 = Conv(w(512), w(1024), 3, 2)  # P5/32
        self.b8 = C3(w(1024), w(1024), d(3))
        self.b9 = SPPF(w(1024), w(1024), 5)
        # neck (top-down, then bottom-up)
        self.h10 = Conv(w(1024), w(512), 1)
        self.h13 = C3(w(1024), w(512), d(3), False)
        self.h14 = Conv(w(512), w(256), 1)
        self.h17 = C3(w(512), w(256), d(3), False)  # P3 out
        self.h18 = Conv(w(256), w(256), 3, 2)
        self.h20 = C3(w(512), w(512), d(3), False)  # P4 out
        self.h21 = Conv(w(512), w(512), 3, 2)
        self.h23 = C3(w(1024), w(1024), d(3), False)  # P5 out
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.detect = Detect(nc, (w(256), w(512), w(1024)))

    def forward(self, x):
        x = self.b2(self.b1(self.b0(x)))
        p3 = self.b4(self.b3(x))
        p4 = self.b6(self.b5(p3))
        x = self.b9(self.b8(self.b7(p4)))
        t5 = self.h10(x)
        t4 = self.h14(self.h13(torch.cat([self.up(t5), p4], 1)))
        o3 = self.h17(torch.cat([self.up(t4), p3], 1))
        o4 = self.h20(torch.cat([self.h18(o3), t4], 1))
        o5 = self.h23(torch.cat([self.h21(o4), t5], 1))
        return self.detect([o3, o4, o5])


# ---------------------------------------------------------------- small MNIST-style CNN

# Fashion-MNIST pixel statistics (of pixel/255 over the 60,000 training images).
FASHION_MEAN = 0.2860
FASHION_STD = 0.3530


class MnistCNN(nn.Module):
    """(conv 3x3 -> BN -> ReLU -> maxpool 2) x 2 -> fully connected. Input [N, 1, 28, 28] of
    pixel/255 in [0, 1]; the model normalises with the dataset mean and std itself, so callers
    need not know them."""

    def __init__(self, num_classes=10, c1=32, c2=64, mean=FASHION_MEAN, std=FASHION_STD):
        super().__init__()
        self.mean, self.std = mean, std
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(c2 * 7 * 7, num_classes)

    def forward(self, x):
        x = (x - self.mean) / self.std
        return self.fc(torch.flatten(self.features(x), 1))


# ---------------------------------------------------------------- registry and weight setup

# name -> (builder taking the class count, default class count, default input shape [C, H, W], note)
MODELS = {
    "vgg16": (lambda nc: torchvision.models.vgg16(weights=None, num_classes=nc), 1000, (3, 224, 224),
              "torchvision VGG16"),
    "resnet50": (lambda nc: torchvision.models.resnet50(weights=None, num_classes=nc), 1000,
                 (3, 224, 224), "torchvision ResNet-50"),
    "unet": (lambda nc: UNet(3, nc, 64), 2, (3, 256, 256), "UNet, base 64"),
    "deeplabv3plus": (lambda nc: DeepLabV3Plus(nc), 21, (3, 512, 512),
                      "DeepLabV3+ on ResNet-50, output stride 16"),
    "yolov5s": (lambda nc: YOLOv5(nc, 0.50, 0.33), 80, (3, 640, 640), "YOLOv5s v6.0"),
    "mnist_cnn": (lambda nc: MnistCNN(nc), 10, (1, 28, 28), "2-conv CNN for 1x28x28"),
}


@torch.no_grad()
def randomize_batchnorm(model, sample_shape, generator):
    """Gives every BatchNorm non-trivial running statistics and affine parameters.

    The statistics are first measured on a random batch (a cumulative average, in train mode),
    so each BN normalises what actually reaches it, then jittered: mean shifted by up to ~0.1 std,
    variance scaled by 0.7-1.4, gamma in [0.5, 1.5], beta ~ N(0, 0.1).

    A BN that saw only a few values per channel (after global pooling: one per image) measured
    how much two random images differ, which is next to nothing: its variance (1e-8 in
    DeepLabV3+'s ASPP pooling branch) blew values up to 1e5, beyond float16, which no trained
    model does. Such a BN instead gets, in a second pass in eval mode (the BNs before it final),
    the mean square of its input's distance from its running mean, so it outputs values of
    order one."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration pass
    seen = {}

    def count(bn, inputs):
        seen[bn] = inputs[0].numel() // bn.num_features

    hooks = [bn.register_forward_pre_hook(count) for bn in bns]
    # Batch of 2: a BN after global pooling sees one value per channel per image.
    x = torch.randn((2,) + tuple(sample_shape), generator=generator)
    model.train()
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    model.eval()
    for bn in bns:
        n = bn.num_features
        std = torch.sqrt(bn.running_var + bn.eps)
        bn.running_mean += 0.1 * std * torch.randn(n, generator=generator)
        bn.running_var *= 0.7 + 0.7 * torch.rand(n, generator=generator)
        bn.weight.copy_(0.5 + torch.rand(n, generator=generator))
        bn.bias.copy_(0.1 * torch.randn(n, generator=generator))

    few = [bn for bn in bns if seen.get(bn, 0) < 64]
    if few:
        def rescale(bn, inputs):
            v = inputs[0].detach().transpose(0, 1).reshape(bn.num_features, -1).double()
            d = (v - bn.running_mean.double()[:, None]) ** 2
            bn.running_var.copy_(d.mean(1).clamp_min(1e-6).to(bn.running_var.dtype))

        hooks = [bn.register_forward_pre_hook(rescale) for bn in few]
        try:
            model(x)
        finally:
            for h in hooks:
                h.remove()
    return model


def build(name, seed=0, input_shape=None, weights=None, num_classes=None):
    """Returns model `name` in eval mode, with num_classes outputs (None: the model's usual).

    Without `weights`, parameters come from torch.manual_seed(seed) and BN statistics are
    randomised (calibrated on input_shape [C, H, W], the model's default when None). With
    `weights` (a .pth path: a state_dict, or a checkpoint holding one under 'state_dict' or
    'model'), those are loaded instead and must match exactly."""
    if name not in MODELS:
        raise KeyError(f"unknown model '{name}' (known: {', '.join(MODELS)})")
    make, default_classes, default_shape, _ = MODELS[name]
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"{name}: the class count must be positive, got {num_classes}")
    torch.manual_seed(seed)
    model = make(num_classes or default_classes)
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu")
        except Exception as e:  # torch.load raises whatever its unpickler meets
            raise ValueError(f"{weights}: not a PyTorch checkpoint ({e})") from e
        if isinstance(state, nn.Module):
            state = state.state_dict()
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        if isinstance(state, dict) and any(k.startswith("module.") for k in state):
            state = {k[len("module."):] if k.startswith("module.") else k: v
                     for k, v in state.items()}
        if not isinstance(state, dict):
            raise ValueError(f"{weights}: holds a {type(state).__name__}, not a state_dict")
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            def some(keys):
                return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            raise ValueError(f"{weights}: not {name} weights: {len(missing)} missing "
                             f"({some(missing)}), {len(unexpected)} unexpected ({some(unexpected)})")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:  # same names, other shapes: another width or class count
            lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
            raise ValueError(f"{weights}: not {name} weights: " + " ".join(lines[:2])) from e
    else:
        g = torch.Generator().manual_seed(seed + 1)
        randomize_batchnorm(model, input_shape or default_shape, g)
    return model.eval()
