"""The HMI/API of the cell: what an operator or an integration uses to run it.

It reads the PLC's status through connections and writes commands, setpoints and recipes to
the PLC through connections. Requests come from Python (``hmi.request(...)``, an operator
script in the config, or later an attacker) and are applied at the HMI's next step, so their
effect always travels over the plant's connections. Every request is checked against the
caller's role and logged (accepted or refused) with its simulated time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cosim.core.unit import PythonUnit
from cosim.core.variables import Causality, Value, Variable, VarType
from cosim.errors import ConfigurationError

COMMANDS: dict[str, tuple[VarType, Value]] = {
    "mode_cmd": (VarType.INTEGER, 1),
    "safe_mode_cmd": (VarType.BOOLEAN, False),
    "reset_cmd": (VarType.BOOLEAN, False),
    "conveyor_speed_sp": (VarType.REAL, 0.8),
    "press_time_sp": (VarType.REAL, 1.0),
    "manual_press_cmd": (VarType.BOOLEAN, False),
    "manual_robot_cmd": (VarType.INTEGER, -1),
    "manual_suction_cmd": (VarType.BOOLEAN, False),
}
STATUS: dict[str, VarType] = {
    "mode": VarType.INTEGER, "state": VarType.INTEGER, "alarm": VarType.INTEGER,
    "parts_good": VarType.INTEGER, "parts_rejected": VarType.INTEGER, "interlock_trips": VarType.INTEGER,
    "safe_state": VarType.BOOLEAN, "producing": VarType.BOOLEAN,
}
# who may write what; "recipe" selects a named recipe
ROLE_RIGHTS: dict[str, set[str]] = {
    "viewer": set(),
    "operator": {"mode_cmd", "safe_mode_cmd", "reset_cmd", "recipe"},
    "engineer": set(COMMANDS) | {"recipe"},
    "safety": {"safe_mode_cmd", "reset_cmd", "mode_cmd"},
}
PULSED = {"reset_cmd"}  # commands that fall back to False after one HMI step


@dataclass(frozen=True)
class Request:
    """One write request to the HMI."""

    tag: str
    value: Any
    user: str = "operator"
    at: float | None = None  # simulated time to apply it; None = next step


class HMI(PythonUnit):
    """Operator panel and integration API.

    Args:
        name: unit name.
        recipes: ``{recipe: {setpoint: value}}`` (setpoints among ``conveyor_speed_sp``,
            ``press_time_sp``).
        recipe: the recipe active at start.
        users: ``{user: role}`` with roles ``viewer``, ``operator``, ``engineer``, ``safety``.
        script: requests applied at given times, ``[{at: 0.0, tag: mode_cmd, value: 1, user: operator}]``.
        require_auth: refuse requests from unknown users or outside their role (an insecure
            HMI, as attacks will exploit, sets this to false).
    """

    def __init__(self, name: str, recipes: Mapping[str, Mapping[str, float]] | None = None,
                 recipe: str | None = None, users: Mapping[str, str] | None = None,
                 script: Sequence[Mapping[str, Any]] = (), require_auth: bool = True) -> None:
        variables = [Variable(tag, Causality.OUTPUT, vtype, start) for tag, (vtype, start) in COMMANDS.items()]
        variables += [Variable(tag, Causality.INPUT, vtype, vtype.coerce(0)) for tag, vtype in STATUS.items()]
        variables.append(Variable("recipe_id", Causality.OUTPUT, VarType.INTEGER, 0))
        super().__init__(name, variables)
        self.recipes = {k: dict(v) for k, v in (recipes or {}).items()}
        for rname, rec in self.recipes.items():
            bad = [k for k in rec if k not in COMMANDS or COMMANDS[k][0] is not VarType.REAL]
            if bad:
                raise ConfigurationError(f"unit '{name}': recipe '{rname}' sets unknown setpoints {bad}")
        self.users = dict(users or {"operator": "operator", "engineer": "engineer", "viewer": "viewer"})
        unknown_roles = {r for r in self.users.values() if r not in ROLE_RIGHTS}
        if unknown_roles:
            raise ConfigurationError(f"unit '{name}': unknown roles {sorted(unknown_roles)}; "
                                     f"roles are {sorted(ROLE_RIGHTS)}")
        self.require_auth = bool(require_auth)
        self.pending: list[Request] = [
            Request(str(r["tag"]), r["value"], str(r.get("user", "operator")),
                    None if r.get("at") is None else float(r["at"]))
            for r in script
        ]
        self.log: list[dict[str, Any]] = []
        if recipe is not None:
            self._apply_recipe(recipe)

    # API ------------------------------------------------------------------------------
    def request(self, tag: str, value: Any, user: str = "operator", at: float | None = None) -> None:
        """Queue a write; it takes effect at the HMI's first step at or after ``at``."""
        self.pending.append(Request(tag, value, user, at))

    def status(self) -> dict[str, Value]:
        """What the operator sees: the PLC status read over the connections."""
        return {tag: self.values[tag] for tag in STATUS}

    # the unit -------------------------------------------------------------------------
    def do_step(self, t: float, h: float) -> None:
        for tag in PULSED:
            self.values[tag] = False
        due = [r for r in self.pending if r.at is None or r.at <= t + 1e-12]
        if due:
            self.pending = [r for r in self.pending if not (r.at is None or r.at <= t + 1e-12)]
            for r in due:
                self._apply(r, t)

    def _apply(self, r: Request, t: float) -> None:
        entry: dict[str, Any] = {"t": t, "user": r.user, "tag": r.tag, "value": r.value}
        role = self.users.get(r.user)
        if r.tag != "recipe" and r.tag not in COMMANDS:
            entry["result"] = "refused: unknown tag"
        elif self.require_auth and role is None:
            entry["result"] = "refused: unknown user"
        elif self.require_auth and r.tag not in ROLE_RIGHTS[role or "viewer"]:
            entry["result"] = f"refused: role '{role}' may not write '{r.tag}'"
        else:
            try:
                if r.tag == "recipe":
                    self._apply_recipe(str(r.value))
                else:
                    self.values[r.tag] = COMMANDS[r.tag][0].coerce(r.value)
                entry["result"] = "accepted"
            except (ValueError, TypeError, ConfigurationError) as exc:
                entry["result"] = f"refused: {exc}"
        self.log.append(entry)

    def _apply_recipe(self, recipe: str) -> None:
        if recipe not in self.recipes:
            raise ConfigurationError(f"unit '{self.name}': no recipe '{recipe}'; recipes are {sorted(self.recipes)}")
        for tag, value in self.recipes[recipe].items():
            self.values[tag] = float(value)
        self.values["recipe_id"] = list(self.recipes).index(recipe)
