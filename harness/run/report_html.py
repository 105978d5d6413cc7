"""report.html: one run on one self-contained page, to send to someone or open offline.

The page is report.md's own text (rendered by markdown-it, which rich already brings) with every
plot under the run directory's plots/ (*.png, *.svg) between the headline and the tables. Nothing
is fetched: the style sheet is inline, the plots are base64 data: URIs, and no script runs. Text
from the results (experiment names, errors) is escaped: raw HTML in it is shown as text, and
markdown links and images are turned off, so no text can make the page load anything.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

MIME = {".png": "image/png", ".svg": "image/svg+xml"}
# Captions of the plots the harness writes; any other file is captioned by its name.
OVERVIEWS = {"training": "every model's training curves side by side"}
PER_EXPERIMENT = {"": "training curves", "time": "time per call against size (log-log), a line per variant"}

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0 auto;
       max-width: 1200px; padding: 1.5em 2em 4em; }
h1 { font-size: 1.6em; margin-bottom: .4em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: .2em; }
code { background: #f3f3f5; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
table { border-collapse: collapse; display: block; overflow-x: auto; margin: .8em 0; font-size: .88em; }
th, td { border: 1px solid #d8d8dc; padding: .25em .6em; white-space: nowrap; }
th { background: #f3f3f5; } tr:nth-child(even) td { background: #fafafb; }
.headline { background: #f7f9fc; border: 1px solid #dfe6f0; border-radius: 6px; padding: .2em 1.2em .6em; }
.headline h2 { border: none; margin-top: .8em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #e4e4e8; }
figcaption { color: #555; font-size: .9em; margin-top: .3em; }
"""


def page(title: str, head_md: str, body_md: str, run_dir: Path, experiments: list[str]) -> str:
    """The whole page: the title and headline, the plots, then the details and tables."""
    head = _markdown(head_md)
    title_end = head.find("</h1>") + len("</h1>") if "</h1>" in head else 0  # the headline's box under the title
    figures = [_figure(p, run_dir, experiments) for p in plots(run_dir, experiments)]
    plots_html = ("<section class=\"plots\"><h2>Plots</h2>\n" + "\n".join(figures) + "</section>\n") if figures else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<link rel=\"icon\" href=\"data:,\">\n"  # no favicon request
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style></head>\n<body>\n"
            f"{head[:title_end]}\n<section class=\"headline\">{head[title_end:]}</section>\n"
            f"{plots_html}{_markdown(body_md)}</body></html>\n")


def plots(run_dir: Path, experiments: list[str]) -> list[Path]:
    """Every *.png and *.svg under plots/: overviews (a name that is no experiment's) first, then by
    experiment order, then by name."""
    root = run_dir / "plots"
    if not root.is_dir():
        return []
    found = [p for p in root.rglob("*") if p.suffix.lower() in MIME and p.is_file()]
    rank = {e: i for i, e in enumerate(experiments)}

    def key(p: Path):
        exp = _experiment_of(p, experiments)
        return (exp is not None, rank.get(exp, 0), str(p.relative_to(root)))

    return sorted(found, key=key)


def _experiment_of(path: Path, experiments: list[str]) -> str | None:
    """The experiment a plot belongs to: its file name is the experiment id, or the id and a suffix."""
    stem = path.stem
    matches = [e for e in experiments if stem == e or stem.startswith((f"{e}-", f"{e}_", f"{e}."))]
    return max(matches, key=len) if matches else None


def _figure(path: Path, run_dir: Path, experiments: list[str]) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    rel = path.relative_to(run_dir).as_posix()
    exp = _experiment_of(path, experiments)
    if exp is None:
        caption = OVERVIEWS.get(path.stem, path.stem.replace("-", " ").replace("_", " "))
    else:
        what = path.stem[len(exp):].strip("-_.")
        caption = f"{exp}: {PER_EXPERIMENT.get(what, what.replace('-', ' ').replace('_', ' '))}"
    return (f"<figure><img alt=\"{html.escape(caption)}\" src=\"data:{MIME[path.suffix.lower()]};base64,{data}\">"
            f"<figcaption>{html.escape(caption)} <code>{html.escape(rel)}</code></figcaption></figure>")


def _markdown(text: str) -> str:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.disable(["link", "image", "autolink", "reference"])  # text from results never makes a link or a load
    return md.render(text)
