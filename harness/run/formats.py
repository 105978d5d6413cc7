"""The number formats every report and view shares: times, speedups, mean ± std, durations."""
from __future__ import annotations


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def fmt_ratio(x: float) -> str:
    """A speedup: three significant digits, no exponent ('2,870×', '16.6×', '0.0957×')."""
    if abs(x) < 1e-9:  # a std of equal ratios that float division made 1e-14
        return "0×"
    return f"{x:,.0f}×" if abs(x) >= 100 else f"{x:.3g}×"


def fmt_pm(mean, std, fmt) -> str:
    """'mean ± std' with one format, the mean alone when std is missing (one value), '—' for none."""
    if mean is None or mean != mean:
        return "—"
    f = fmt if callable(fmt) else fmt.format
    return f(mean) + (f" ± {f(std)}" if std is not None and std == std else "")


def fmt_mean_std(values, fmt: str, scale: float = 1.0) -> str:
    """fmt_pm over the non-missing values of a Series (std with n-1, as pandas computes it)."""
    x = values.dropna().astype(float) * scale
    return fmt_pm(x.mean(), x.std() if len(x) > 1 else None, fmt) if len(x) else "—"


def fmt_duration(seconds: float) -> str:
    """A wall time a person reads: '12.3 s', '4 min 05 s', '2 h 03 min'."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
