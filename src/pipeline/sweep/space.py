"""The search space, written with Hydra's sweep grammar, as Optuna distributions.

``choice(a, b)`` -> categorical, ``interval(lo, hi)`` -> float, ``range(lo, hi[, step])`` -> int (or
stepped float), ``tag(log, ...)`` -> log scale. A parameter may depend on another one
(``conditions: {optimizer.momentum: optimizer=sgd}``): it is only sampled when the condition holds.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


# choice([32],[64,32]): list choices are handled by design (override_value writes them back as lists, and Optuna
# stores them as they are); Optuna warned that they "should be a tuple of None, bool, int, float and str" each time
# it built such a distribution, four times a trial
warnings.filterwarnings("ignore", message="Choices for a categorical distribution should be a tuple of None, bool, int, "
                        "float and str", category=UserWarning)


class SearchSpaceError(ValueError):
    """A search-space entry cannot be understood; the message names the key."""


@dataclass(frozen=True)
class SearchParam:
    key: str  # the override key as written, e.g. "optimizer.lr" or "+model.l1"
    distribution: BaseDistribution
    condition: Optional[tuple[str, tuple[str, ...]]] = None  # (parent key, allowed values)

    @property
    def name(self) -> str:
        """The parameter's name in Optuna: the config key without the override prefix."""
        return self.key.lstrip("+~")


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[SearchParam, ...]
    fixed_overrides: tuple[str, ...]  # plain overrides every trial gets
    # parameters left out because the command line took away the values their condition needs, one line each
    notes: tuple[str, ...] = ()

    def describe(self) -> dict[str, str]:
        described = {}
        for param in self.params:
            text = describe_distribution(param.distribution)
            if param.condition:
                parent, allowed = param.condition
                text += f" if {parent} in {list(allowed)}"
            described[param.name] = text
        return described

    def grid(self) -> dict[str, list]:
        """The search space as lists of values, for the grid sampler."""
        grid = {}
        for param in self.params:
            if param.condition:  # its condition decided on the command line: searched in every trial, or in none
                parent, allowed = param.condition
                others = [str(c) for c in getattr(next(p for p in self.params if p.name == parent).distribution,
                                                  "choices", ()) if str(c) not in allowed]
                left_out = f", leave it out with {parent}={others[0]}" if len(others) == 1 else (
                    f", leave it out with '{parent}=choice({','.join(others)})'" if others else "")
                raise SearchSpaceError(f"sampler=grid cannot search '{param.name}', which is sampled only where "
                                       f"{parent}={','.join(allowed)} (hydra.sweeper.conditions): search it in every "
                                       f"trial with {parent}={allowed[0]}{left_out}, or pick another sampler "
                                       f"(hydra.sweeper.sampler=random)")
            distribution = param.distribution
            if isinstance(distribution, CategoricalDistribution):
                grid[param.name] = list(distribution.choices)
            elif distribution.step is not None:
                count = int(round((distribution.high - distribution.low) / distribution.step)) + 1
                grid[param.name] = [distribution.low + i * distribution.step for i in range(count)]
            else:
                raise SearchSpaceError(f"sampler=grid needs choice(...) or range(...) for '{param.name}', "
                                       f"not {describe_distribution(distribution)}")
        return grid


def describe_distribution(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return f"choice({', '.join(map(str, distribution.choices))})"
    kind = "range" if distribution.step is not None else "interval"
    text = f"{kind}({distribution.low}, {distribution.high}" + (f", step={distribution.step})" if distribution.step else ")")
    return f"log {text}" if distribution.log else text


def parse_search_space(params: Mapping[str, Any], arguments: Sequence[str],
                       conditions: Optional[Mapping[str, str]] = None) -> SearchSpace:
    """``hydra.sweeper.params`` plus the command line's overrides (the command line wins)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    searched: dict[str, SearchParam] = {}
    fixed: dict[str, str] = {}
    declared: dict[str, BaseDistribution] = {}  # the search file's own space, before the command line changed it
    for index, line in enumerate(lines):
        try:
            override = parser.parse_overrides([line])[0]
        except Exception as error:
            raise SearchSpaceError(f"cannot parse search-space entry '{line}': {str(error).splitlines()[0]}") from None
        key = override.get_key_element()
        name = key.lstrip("+~")
        searched.pop(name, None)
        fixed.pop(name, None)
        if override.is_sweep_override():
            searched[name] = SearchParam(key, to_distribution(name, override.value()))
            if index < len(params or {}):
                declared[name] = searched[name].distribution
        else:
            fixed[name] = line
    conditions = {name: condition for name, condition in (conditions or {}).items()
                  if condition is not None}  # {optimizer.momentum: null} on the command line: no condition
    notes: list[str] = []

    def left_out(name: str, condition: str, parent: str, allowed: Sequence[str], given: str) -> None:
        del searched[name]  # its condition never holds: not searched (optimizer.momentum for adam)
        notes.append(f"{name} is not searched: {parent} no longer takes {' or '.join(allowed)} ({given}), which its "
                     f"condition {condition} needs")

    for name, condition in conditions.items():
        if name not in searched:
            raise SearchSpaceError(f"hydra.sweeper.conditions names '{name}', which is not in the search space "
                                   f"({', '.join(searched) or 'empty'})")
        parent = str(condition).partition("=")[0].strip()
        if parent in fixed and parent not in searched:  # optimizer=adam on the command line of a search over it
            stand_in = SearchParam(parent, declared.get(parent, CategoricalDistribution([0])))
            _, allowed = parse_condition(name, condition, {parent: stand_in})
            given = _parsed_value(fixed[parent].split("=", 1)[1].strip())
            if not any(_same_value(_parsed_value(value), given) for value in allowed):
                left_out(name, condition, parent, allowed, fixed[parent])
            continue  # or always holds: searched as any other parameter
        parent, allowed = parse_condition(name, condition, searched, declared.get(parent))
        choices = getattr(searched[parent].distribution, "choices", None)
        if choices is not None and not {str(c) for c in choices} & set(allowed):  # optimizer=choice(adam,rmsprop)
            narrowed = f"{parent}={describe_distribution(searched[parent].distribution)}"
            left_out(name, condition, parent, allowed, narrowed)
            continue
        searched[name] = SearchParam(searched[name].key, searched[name].distribution, (parent, allowed))
    # parents before the parameters that depend on them
    ordered = sorted(searched.values(), key=lambda p: p.condition is not None)
    return SearchSpace(tuple(ordered), tuple(fixed.values()), tuple(notes))


def parse_condition(name: str, condition: str, searched: Mapping[str, SearchParam],
                    declared: Optional[BaseDistribution] = None) -> tuple[str, tuple[str, ...]]:
    """(parent, the values it is sampled for); ``declared``: the parent as the search file wrote it, whose
    values a condition may name after the command line narrowed the parent's choice."""
    parent, separator, values = str(condition).partition("=")
    parent = parent.strip()
    if not separator or not values.strip():
        raise SearchSpaceError(f"condition for '{name}' must read 'parent=value[,value...]', got '{condition}'")
    if parent not in searched or searched[parent].condition is not None:
        raise SearchSpaceError(f"condition for '{name}' depends on '{parent}', which must be an unconditional "
                               f"parameter of the search space")
    choices = getattr(searched[parent].distribution, "choices", None)
    if choices is not None:  # and those of the search file (sgd where the command line gave choice(adam,rmsprop))
        choices = list(choices) + [c for c in getattr(declared, "choices", ())
                                   if not any(_same_value(taken, c) for taken in choices)]
    # a value as Hydra reads it (true: True, 1: 1), written as the choice it is: sample() compares str(value)
    allowed = tuple(next((str(c) for c in choices or () if _same_value(c, _parsed_value(v.strip()))), v.strip())
                    for v in values.split(","))
    if choices is not None and len(choices) > 1:  # a value the parent never took (a typo): refused, not left out
        unknown = [v for v in allowed if v not in {str(c) for c in choices}]
        if unknown:
            raise SearchSpaceError(f"condition for '{name}': {parent}={','.join(unknown)} is not a value {parent} takes "
                                   f"(choice({', '.join(map(str, choices))}))")
    return parent, allowed


def _parsed_value(text: str) -> Any:
    """``text`` as the override grammar reads a value (``true`` is True, ``1`` is 1); the text where it cannot."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([f"key={text}"])[0].value()
    except Exception:
        return text


def _same_value(choice: Any, value: Any) -> bool:
    """``choice == value``, where True is not 1, and a text is the same as a choice written as that text."""
    if isinstance(choice, bool) != isinstance(value, bool):
        return False
    return choice == value or str(choice) == str(value)


def to_distribution(name: str, sweep) -> BaseDistribution:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    log = "log" in sweep.tags
    if isinstance(sweep, ChoiceSweep):
        if log:
            raise SearchSpaceError(f"'{name}': tag(log, ...) applies to interval/range, not choice")
        return CategoricalDistribution(list(sweep.list))
    if isinstance(sweep, IntervalSweep):
        low, high = float(sweep.start), float(sweep.end)
        _check_bounds(name, low, high, log)
        return FloatDistribution(low, high, log=log)
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if log and step != 1:  # Optuna's log scale has no steps: the step was dropped, another space searched
            # integers stay integers: tag(log, range(8, 128)); interval() would draw 8.0 for an integer key
            integers = all(isinstance(v, int) for v in (start, stop))
            without_step = f"range({start}, {stop})" if integers else f"interval({start}, {stop})"
            raise SearchSpaceError(f"'{name}': tag(log, range({start}, {stop}, {step})) cannot keep the step {step} "
                                   f"(Optuna draws a log scale without steps); use tag(log, {without_step}) "
                                   f"or range({start}, {stop}, {step}) without log")
        if (stop - start) * step <= 0:  # as written, not the last value range() reaches (64 > 15 for range(64, 16))
            raise SearchSpaceError(f"'{name}': range({start}, {stop}{f', {step}' if step != 1 else ''}) is empty: it "
                                   f"counts from {start} by {step}, up to {stop} excluded")
        if all(isinstance(v, int) for v in (start, stop, step)):
            # Hydra's range excludes its stop, like Python's
            high = start + ((stop - 1 - start) // step) * step
            _check_bounds(name, start, high, log)
            return IntDistribution(start, high, step=step, log=log)
        count = int(math.floor((stop - start) / step - 1e-9)) + 1
        high = start + (count - 1) * step
        _check_bounds(name, start, high, log)
        return FloatDistribution(float(start), float(high), step=None if log else float(step), log=log)
    raise SearchSpaceError(f"'{name}': unsupported sweep {sweep!r}; use choice(), interval() or range()")


def _check_bounds(name: str, low: float, high: float, log: bool) -> None:
    if high < low:
        raise SearchSpaceError(f"'{name}': empty range ({low} > {high})")
    if log and low <= 0:
        raise SearchSpaceError(f"'{name}': tag(log, ...) needs a lower bound > 0, got {low}")


def corners(space: SearchSpace) -> list[dict[str, Any]]:
    """Values of every parameter that a trial could take, to check before any study exists: every choice of each
    categorical parameter and both ends of each range, each with the other parameters at their first choice or low
    end; a conditional parameter only where its condition holds, as :func:`sample` gives it."""
    def probe(changed: Optional[tuple[str, Any]] = None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for param in space.params:
            if param.condition and str(values.get(param.condition[0])) not in param.condition[1]:
                continue
            distribution = param.distribution
            first = distribution.choices[0] if isinstance(distribution, CategoricalDistribution) else distribution.low
            values[param.name] = changed[1] if changed is not None and changed[0] == param.name else first
        return values

    probes = [probe()]
    for param in space.params:
        distribution = param.distribution
        others = (distribution.choices[1:] if isinstance(distribution, CategoricalDistribution)
                  else [distribution.high] if distribution.high != distribution.low else [])
        for value in others:
            if param.condition:  # with its parent at a value that lets it be sampled
                parent, allowed = param.condition
                parent_param = next(p for p in space.params if p.name == parent)
                parent_value = next((c for c in getattr(parent_param.distribution, "choices", ())
                                     if str(c) in allowed), None)
                if parent_value is None:
                    continue
                candidate = probe((parent, parent_value))
                candidate[param.name] = value
            else:
                candidate = probe((param.name, value))
            if candidate not in probes:
                probes.append(candidate)
    return probes


def sample(trial, space: SearchSpace) -> dict[str, Any]:
    """Suggest every parameter whose condition holds; returns {name: value}."""
    values: dict[str, Any] = {}
    for param in space.params:
        if param.condition:
            parent, allowed = param.condition
            if str(values.get(parent)) not in allowed:
                continue
        values[param.name] = suggest(trial, param.name, param.distribution)
    return values


def suggest(trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    suggest_number = trial.suggest_int if isinstance(distribution, IntDistribution) else trial.suggest_float
    return suggest_number(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)


def trial_overrides(space: SearchSpace, values: Mapping[str, Any]) -> list[str]:
    """The command-line overrides of one trial: the fixed ones, then the sampled values."""
    keys = {param.name: param.key for param in space.params}
    return list(space.fixed_overrides) + [f"{keys[name]}={override_value(value)}" for name, value in values.items()]


def override_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":  # choice([32],[64,32]): a list,
        return "[" + ",".join(override_value(item) for item in value) + "]"   # not the text '[64, 32]'
    text = str(value)
    if text.replace("_", "").replace("-", "").replace(".", "").replace("/", "").isalnum():
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
