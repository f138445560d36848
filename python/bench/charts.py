"""Bar charts of the results: one panel per model (latency at batch 1) or per model and large
batch (throughput), a bar per runtime with its min-p90 range as a whisker, kiln's rows in warm
colours and the peers in cool ones, versions in the caption. Drawn with matplotlib when it is
installed, else with png.py; both read the same chart description."""

import math

import png

KILN_COLORS = [(230, 85, 13), (253, 141, 60), (166, 54, 3), (253, 174, 107), (127, 39, 4)]
PEER_COLORS = [(49, 130, 189), (107, 174, 214), (49, 163, 84), (117, 107, 177), (99, 99, 99),
               (158, 202, 225), (116, 196, 118), (158, 154, 200), (150, 150, 150)]


def peer_colors(results):
    order = sorted(results["peers"].items(), key=lambda kv: (kv[1].get("order", 100), kv[0]))
    colors, k, p = {}, 0, 0
    for name, info in order:
        if info.get("family") == "kiln":
            colors[name] = KILN_COLORS[k % len(KILN_COLORS)]
            k += 1
        else:
            colors[name] = PEER_COLORS[p % len(PEER_COLORS)]
            p += 1
    return colors


def _short(text, n):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def _bar(results, index, colors, model, batch, peer, kind):
    info = results["peers"][peer]
    rec = index.get((model, batch, peer))
    bar = {"label": info["label"], "color": colors[peer], "kiln": info.get("family") == "kiln"}
    if rec is None:
        bar["note"] = "not run"
    elif rec["status"] != "ok":
        bar["note"] = f"{rec['status']}: {_short(rec.get('error', ''), 60)}"
    else:
        lat = rec["latency_ms"]
        if kind == "latency":
            bar.update(value=lat["median"], lo=lat.get("min"), hi=lat.get("p90"),
                       text=f"{fmt_num(lat['median'])} ms")
        else:
            thr = rec.get("throughput_per_s")
            if not thr:
                bar["note"] = "no latency median"
                return bar
            bar.update(value=thr, text=f"{fmt_num(thr)}/s",
                       lo=batch * 1000.0 / lat["p90"] if lat.get("p90") else None,
                       hi=batch * 1000.0 / lat["min"] if lat.get("min") else None)
    return bar


def chart_specs(results, caption):
    """[(file name, figure description)] for latency.png and throughput.png."""
    index = {(c["model"], c["batch"], c["peer"]): c for c in results["cells"]}
    colors = peer_colors(results)
    order = [n for n, _ in sorted(results["peers"].items(), key=lambda kv: (kv[1].get("order", 100), kv[0]))]
    lat_panels, thr_panels = [], []
    for model, m in results["models"].items():
        batches = m["batches"]
        if not any(c["model"] == model for c in results["cells"]):
            continue
        size = "x".join(str(v) for v in m["input"][1:])
        lat_panels.append({"title": f"{m['label']} {size}, batch {batches[0]}: latency (ms, lower is better)",
                           "bars": [_bar(results, index, colors, model, batches[0], p, "latency") for p in order]})
        for b in batches[1:] or batches[:1]:
            thr_panels.append({"title": f"{m['label']} {size}, batch {b}: images/s (higher is better)",
                               "bars": [_bar(results, index, colors, model, b, p, "throughput") for p in order]})
    for panel in lat_panels:
        _annotate(panel, lower_is_better=True)
    for panel in thr_panels:
        _annotate(panel, lower_is_better=False)
    figs = []
    if lat_panels:
        figs.append(("latency.png", {"title": "Latency at batch 1, median with min-p90 range", "panels": lat_panels,
                                     "caption": caption}))
    if thr_panels:
        figs.append(("throughput.png", {"title": "Throughput at large batch (batch / median latency), "
                                                 "range from p90 and min", "panels": thr_panels,
                                        "caption": caption}))
    return figs


def _annotate(panel, lower_is_better):
    """Puts kiln against each other runtime: '(kiln 2.5x)' after a peer's value means the fastest
    kiln row is 2.5 times as fast as that peer."""
    kiln = [b["value"] for b in panel["bars"] if b["kiln"] and b.get("value")]
    if not kiln:
        return
    best = min(kiln) if lower_is_better else max(kiln)
    for b in panel["bars"]:
        if not b["kiln"] and b.get("value"):
            ratio = b["value"] / best if lower_is_better else best / b["value"]
            b["text"] += f" (kiln {ratio:.2g}x)" if ratio < 10 else f" (kiln {ratio:.0f}x)"


def fmt_num(v):
    """3 significant digits, thousands separated: 0.0123, 1.23, 12.3, 123, 1,234."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "?"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    return f"{v:.{max(2, 2 - int(math.floor(math.log10(a))))}f}"


# ------------------------------------------------------------------ axis


def axis(values, los, his):
    """(log?, lo, hi, ticks) covering every value and whisker."""
    vals = [v for v in values if v and v > 0]
    tops = [h for h in his if h and h > 0] + vals
    if not vals:
        return False, 0.0, 1.0, [0.0, 0.5, 1.0]
    bottoms = [lo for lo in los if lo and lo > 0] + vals
    if max(tops) / min(bottoms) > 30:
        lo = 10 ** math.floor(math.log10(min(bottoms)))
        hi = 10 ** math.ceil(math.log10(max(tops)))
        if hi <= lo:
            hi = lo * 10
        n = int(round(math.log10(hi / lo)))
        return True, lo, hi, [lo * 10 ** i for i in range(n + 1)]
    top = max(tops) * 1.05
    raw = top / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = int(math.ceil(top / step - 1e-9))
    return False, 0.0, n * step, [i * step for i in range(n + 1)]


def fmt_tick(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


# ------------------------------------------------------------------ png.py renderer

S = 2  # font scale: 10x14 pixel glyphs
CW = png.GLYPH_W * S


def _panel_height(panel):
    return 34 + 26 * len(panel["bars"]) + 34


def render_builtin(fig, path):
    panels = fig["panels"]
    label_chars = max(len(b["label"]) for p in panels for b in p["bars"])
    panel_w = max(900, label_chars * CW + 700)
    cols = 2 if len(panels) > 1 else 1
    margin, gap = 24, 28
    width = margin * 2 + cols * panel_w + (cols - 1) * gap
    rows = [panels[i:i + cols] for i in range(0, len(panels), cols)]
    row_h = [max(_panel_height(p) for p in row) for row in rows]
    caption = png.wrap(fig["caption"], width - 2 * margin, S)
    legend_h = 30
    height = margin + 3 * 8 + 16 + legend_h + sum(row_h) + gap * len(rows) + len(caption) * 22 + margin
    c = png.Canvas(width, height)
    y = margin
    c.text(margin, y, fig["title"], (0, 0, 0), 3)
    y += 3 * 8 + 16
    # Legend: kiln against peers.
    x = margin
    c.fill_rect(x, y + 2, x + 14, y + 16, KILN_COLORS[0])
    c.text(x + 20, y + 2, "kiln", (0, 0, 0), S)
    x += 20 + png.text_width("kiln", S) + 30
    c.fill_rect(x, y + 2, x + 14, y + 16, PEER_COLORS[0])
    c.text(x + 20, y + 2, "other runtimes", (0, 0, 0), S)
    x += 20 + png.text_width("other runtimes", S) + 30
    c.vline(x + 7, y + 2, y + 16, (0, 0, 0))
    c.hline(x + 3, x + 11, y + 2, (0, 0, 0))
    c.hline(x + 3, x + 11, y + 16, (0, 0, 0))
    c.text(x + 20, y + 2, "min-p90 range", (0, 0, 0), S)
    x += 20 + png.text_width("min-p90 range", S) + 30
    c.text(x, y + 2, "(kiln Nx): the fastest kiln row is N times as fast as that runtime", (0, 0, 0), S)
    y += legend_h
    for row, rh in zip(rows, row_h):
        for i, panel in enumerate(row):
            _draw_panel(c, margin + i * (panel_w + gap), y, panel_w, panel, label_chars)
        y += rh + gap
    for line in caption:
        c.text(margin, y, line, (60, 60, 60), S)
        y += 22
    c.save(path)


def _draw_panel(c, x0, y0, w, panel, label_chars):
    bars = panel["bars"]
    c.text(x0, y0, png.wrap(panel["title"], w, S)[0], (0, 0, 0), S)
    top = y0 + 30
    label_w = label_chars * CW + 12
    value_w = 22 * CW
    ax0, ax1 = x0 + label_w, x0 + w - value_w
    vals = [b.get("value") for b in bars]
    log, lo, hi, ticks = axis(vals, [b.get("lo") for b in bars], [b.get("hi") for b in bars])

    def px(v):
        if log:
            v = max(v, lo)
            return ax0 + (ax1 - ax0) * math.log10(v / lo) / math.log10(hi / lo)
        return ax0 + (ax1 - ax0) * (v - lo) / (hi - lo)

    bottom = top + 26 * len(bars) + 4
    for t in ticks:  # grid
        c.vline(px(t), top - 2, bottom, (225, 225, 225))
    for i, b in enumerate(bars):
        yb = top + 26 * i
        c.text(ax0 - 8, yb + 5, b["label"], (0, 0, 0), S, align="right")
        if b.get("value") is None:
            c.text(ax0 + 6, yb + 5, _short(b.get("note", ""), (ax1 - ax0 + value_w) // CW - 1), (150, 150, 150), S)
            continue
        c.fill_rect(ax0, yb + 3, max(ax0 + 2, px(b["value"])), yb + 21, b["color"])
        if b.get("lo") and b.get("hi"):
            xl, xh = px(b["lo"]), px(b["hi"])
            c.hline(xl, xh, yb + 12, (0, 0, 0))
            c.vline(xl, yb + 7, yb + 17, (0, 0, 0))
            c.vline(xh, yb + 7, yb + 17, (0, 0, 0))
        c.text(ax1 + 8, yb + 5, b.get("text", ""), (0, 0, 0), S)
    c.hline(ax0, ax1, bottom, (0, 0, 0))
    c.vline(ax0, top - 2, bottom, (0, 0, 0))
    last_end = -1e9
    for t in ticks:
        x = px(t)
        c.vline(x, bottom, bottom + 5, (0, 0, 0))
        text = fmt_tick(t)
        start = x - png.text_width(text, S) / 2
        if start > last_end + 6:  # skip labels that would overlap
            c.text(x, bottom + 9, text, (0, 0, 0), S, align="center")
            last_end = start + png.text_width(text, S)
    if log:
        c.text(ax0 - 3 * CW, bottom + 9, "log scale", (120, 120, 120), S, align="right")


# ------------------------------------------------------------------ matplotlib renderer


def render_matplotlib(fig, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = fig["panels"]
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    nbars = max(len(p["bars"]) for p in panels)
    f, axes = plt.subplots(rows, cols, figsize=(8 * cols, (0.35 * nbars + 1.2) * rows + 1.2), squeeze=False)
    for ax, panel in zip([a for r in axes for a in r], panels):
        bars = panel["bars"]
        ys = list(range(len(bars)))[::-1]
        log, lo, hi, _ = axis([b.get("value") for b in bars], [b.get("lo") for b in bars],
                              [b.get("hi") for b in bars])
        for y, b in zip(ys, bars):
            if b.get("value") is None:
                ax.text(lo if log else 0, y, "  " + _short(b.get("note", ""), 70), va="center", color="gray",
                        fontsize=8)
                continue
            color = tuple(v / 255 for v in b["color"])
            err = None
            if b.get("lo") and b.get("hi"):
                err = [[max(0, b["value"] - b["lo"])], [max(0, b["hi"] - b["value"])]]
            base = lo if log else 0  # on a log axis bars start at the axis' left end
            ax.barh(y, b["value"] - base, color=color, capsize=3, left=base)
            if err:
                ax.errorbar(b["value"], y, xerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
            ax.text(b.get("hi") or b["value"], y, "  " + b.get("text", ""), va="center", fontsize=8)
        ax.set_yticks(ys)
        ax.set_yticklabels([b["label"] for b in bars], fontsize=8)
        if log:
            ax.set_xscale("log")
        ax.set_xlim(lo, hi * (3 if log else 1.25))
        ax.set_title(panel["title"], fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax in [a for r in axes for a in r][len(panels):]:
        ax.axis("off")
    f.suptitle(fig["title"] + "\norange: kiln, blue/green/grey: other runtimes; whiskers: min-p90 range; "
               "(kiln Nx): the fastest kiln row is N times as fast as that runtime", fontsize=10)
    f.text(0.01, 0.005, fig["caption"], fontsize=7, wrap=True, va="bottom")
    f.tight_layout(rect=(0, 0.04, 1, 0.97))
    f.savefig(path, dpi=100)
    plt.close(f)


def render(fig, path, mode="auto"):
    """Draws fig to path; returns the renderer used. 'auto' tries matplotlib, then png.py."""
    if mode in ("auto", "matplotlib"):
        try:
            render_matplotlib(fig, path)
            return "matplotlib"
        except ImportError:
            if mode == "matplotlib":
                raise
        except Exception:
            if mode == "matplotlib":
                raise
    render_builtin(fig, path)
    return "builtin"
