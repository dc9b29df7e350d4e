"""Task performance summaries computed from a session's trials and rewards.

Definitions (this package's own; documented so that results can be checked):

* **reward rate** of trial *i*: hits (rewarded responses, auto-rewards
  excluded) per minute over the trials within ``window`` trials of *i*
  (both sides), timed from the first to the last trial start in that span;
  NaN for the first ``initial_trials`` trials.
* **rolling rates**: over the last ``rolling_window`` non-aborted,
  non-auto-rewarded trials, ``hit_rate_raw`` = hits / go trials and
  ``false_alarm_rate_raw`` = false alarms / catch trials. The corrected rates
  are clipped to ``[1/(2n), 1 - 1/(2n)]`` (``n`` = go or catch trials in the
  window), and ``rolling_dprime`` = z(hit_rate) - z(false_alarm_rate).
  Aborted and auto-rewarded trials get NaN.
* **engaged** trials have a reward rate of at least the threshold (2/min).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

REWARD_RATE_WINDOW = 25
REWARD_RATE_INITIAL_TRIALS = 10
ROLLING_WINDOW = 100
ENGAGED_REWARD_RATE = 2.0


def reward_rate(trials: pd.DataFrame, window: int = REWARD_RATE_WINDOW,
                initial_trials: int = REWARD_RATE_INITIAL_TRIALS) -> np.ndarray:
    """Rewarded responses per minute around each trial (see module docs)."""
    n = len(trials)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    hits = np.concatenate([[0], np.cumsum(trials["hit"].to_numpy(bool))])
    starts = trials["start_time"].to_numpy(float)
    for i in range(min(initial_trials, n), n):
        lo, hi = max(0, i - window), min(n, i + window)
        elapsed = starts[hi - 1] - starts[lo]
        if elapsed > 0:
            out[i] = (hits[hi] - hits[lo]) / elapsed * 60.0
    return out


def _z(rates: np.ndarray) -> np.ndarray:
    normal = NormalDist()
    return np.array([normal.inv_cdf(r) if np.isfinite(r) else np.nan for r in rates])


def rolling_performance(trials: pd.DataFrame, window: int = ROLLING_WINDOW) -> pd.DataFrame:
    """Rolling reward rate, hit and false-alarm rates and d' per trial (index ``trials_id``)."""
    eligible = ~(trials["aborted"].to_numpy(bool) | trials["auto_rewarded"].to_numpy(bool))
    sub = trials.loc[eligible]
    go = sub["go"].astype(float)
    catch = sub["catch"].astype(float)
    hits = sub["hit"].astype(float).rolling(window, min_periods=1).sum()
    false_alarms = sub["false_alarm"].astype(float).rolling(window, min_periods=1).sum()
    n_go = go.rolling(window, min_periods=1).sum()
    n_catch = catch.rolling(window, min_periods=1).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        hit_raw = (hits / n_go).to_numpy()
        fa_raw = (false_alarms / n_catch).to_numpy()
        hit = np.clip(hit_raw, 1 / (2 * n_go.to_numpy()), 1 - 1 / (2 * n_go.to_numpy()))
        fa = np.clip(fa_raw, 1 / (2 * n_catch.to_numpy()), 1 - 1 / (2 * n_catch.to_numpy()))
    frame = pd.DataFrame(index=trials.index)
    frame["reward_rate"] = reward_rate(trials)
    for name, values in (("hit_rate_raw", hit_raw), ("hit_rate", hit),
                         ("false_alarm_rate_raw", fa_raw), ("false_alarm_rate", fa),
                         ("rolling_dprime", _z(hit) - _z(fa))):
        column = np.full(len(trials), np.nan)
        column[eligible] = values
        frame[name] = column
    return frame


def performance_metrics(trials: pd.DataFrame, rewards: pd.DataFrame,
                        engaged_trial_reward_rate_threshold: float = ENGAGED_REWARD_RATE
                        ) -> dict[str, Any]:
    """Counts and mean/max rates of a session (see module docs for the definitions)."""
    rolling = rolling_performance(trials)
    engaged = rolling["reward_rate"].to_numpy() >= engaged_trial_reward_rate_threshold

    def mean(column: str, mask: np.ndarray | None = None) -> float:
        values = rolling[column].to_numpy()
        values = values if mask is None else values[mask]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def maximum(column: str, mask: np.ndarray | None = None) -> float:
        values = rolling[column].to_numpy()
        values = values if mask is None else values[mask]
        return float(np.nanmax(values)) if np.isfinite(values).any() else float("nan")

    def count(column: str) -> int:
        return int(trials[column].astype(bool).sum())

    return {
        "trial_count": int(len(trials)),
        "go_trial_count": count("go"),
        "catch_trial_count": count("catch"),
        "hit_trial_count": count("hit"),
        "miss_trial_count": count("miss"),
        "false_alarm_trial_count": count("false_alarm"),
        "correct_reject_trial_count": count("correct_reject"),
        "auto_rewarded_trial_count": count("auto_rewarded"),
        "rewarded_trial_count": int((~trials["reward_time"].isna()).sum()),
        "total_reward_count": int(len(rewards)),
        "total_reward_volume": float(rewards["volume"].sum()),
        "maximum_reward_rate": maximum("reward_rate"),
        "engaged_trial_count": int(engaged.sum()),
        "mean_hit_rate": mean("hit_rate"),
        "mean_hit_rate_uncorrected": mean("hit_rate_raw"),
        "mean_hit_rate_engaged": mean("hit_rate", engaged),
        "mean_false_alarm_rate": mean("false_alarm_rate"),
        "mean_false_alarm_rate_uncorrected": mean("false_alarm_rate_raw"),
        "mean_false_alarm_rate_engaged": mean("false_alarm_rate", engaged),
        "mean_dprime": mean("rolling_dprime"),
        "mean_dprime_engaged": mean("rolling_dprime", engaged),
        "max_dprime": maximum("rolling_dprime"),
        "max_dprime_engaged": maximum("rolling_dprime", engaged),
    }
