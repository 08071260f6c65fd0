"""Users, teams, roles, login sessions, API tokens, login throttling and budgets.

Only an owner (or the database's own administrator: no actor, e.g. `portrait team` run with
the database URL) may change members, budgets or other people's tokens; the checks are here,
next to the SQL, so every surface gets them.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from ..accounts import (
    ROLES,
    Actor,
    hash_password,
    hash_secret,
    new_secret,
    normalise_email,
    password_needs_rehash,
    verify_password,
)
from ..errors import Forbidden, LedgerError, LoginRequired, TooManyAttempts, UsageError
from ..records import new_id
from . import schema as s
from .core import CoreLedger
from .rows import BudgetRow, MemberRow, TeamRow, TokenRow, UserRow

__all__ = ["AccountsLedger", "LoginThrottle"]

SESSION_TTL_S = 14 * 24 * 3600
TOKEN_PREFIX = "pst_"


class LoginThrottle:
    """How many failed logins are allowed, per account and per client address, in a sliding window."""

    window_s: float = 15 * 60
    per_account: int = 5
    per_client: int = 20


class AccountsLedger(CoreLedger):
    throttle = LoginThrottle()

    def _admin(self, team_id: str | None = None) -> None:
        """Only an owner of `team_id` (or the database administrator: no actor) manages it."""
        if self.actor is None:
            return
        self.actor.require("admin")
        if team_id is not None and team_id != self.actor.team_id:
            raise Forbidden(f"{self.actor.label} is not an owner of that team", hint="sign in to that team")

    # --- teams and users ----------------------------------------------------------------------
    def has_users(self) -> bool:
        """Whether this studio has accounts (then the web studio asks everyone to sign in)."""
        with self._read() as c:
            return c.execute(sa.select(sa.literal(1)).select_from(s.users).limit(1)).first() is not None

    def create_team(self, name: str) -> TeamRow:
        if self.actor is not None:
            raise Forbidden("teams are created by the studio's administrator",
                            hint="run 'portrait team init' with the database URL")
        name = (name or "").strip()
        if not name:
            raise UsageError("a team needs a name", field="team", hint="--team 'Acme Studio'")
        team_id = new_id("team_")
        with self._write() as c:
            if c.execute(sa.select(s.teams.c.id).where(s.teams.c.name == name)).first():
                raise UsageError(f"a team named '{name}' exists", field="team", hint="choose another name")
            c.execute(s.teams.insert().values(id=team_id, name=name, created_at=time.time(), created_by=self.user_id))
        return self.team(team_id)

    def team(self, ref: str) -> TeamRow:
        with self._read() as c:
            row = c.execute(sa.select(s.teams).where(sa.or_(s.teams.c.id == ref, s.teams.c.name == ref))).first()
        if row is None or (self.actor is not None and row.id != self.actor.team_id):
            raise LedgerError(f"no team '{ref}'", hint="'portrait team list' shows the teams")
        return TeamRow(id=row.id, name=row.name, created_at=row.created_at)

    def teams(self) -> list[TeamRow]:
        t = s.teams
        where = [t.c.id == self.actor.team_id] if self.actor else []
        with self._read() as c:
            rows = c.execute(sa.select(t).where(*where).order_by(t.c.created_at)).all()
        return [TeamRow(id=r.id, name=r.name, created_at=r.created_at) for r in rows]

    @staticmethod
    def _user_row(r: Any) -> UserRow:
        return UserRow(id=r.id, email=r.email, name=r.name, created_at=r.created_at,
                       disabled=r.disabled_at is not None, has_password=bool(r.password_hash))

    def create_user(self, email: str, *, password: str | None = None, name: str | None = None) -> UserRow:
        self._admin()
        email = normalise_email(email)
        hashed = hash_password(password) if password is not None else None
        user_id = new_id("user_")
        with self._write() as c:
            if c.execute(sa.select(s.users.c.id).where(s.users.c.email == email)).first():
                raise UsageError(f"{email} already has an account", field="email",
                                 hint="add them to the team with 'portrait team add EMAIL --role ROLE'")
            c.execute(s.users.insert().values(id=user_id, email=email, name=name, password_hash=hashed,
                                              created_at=time.time()))
        return self.user(user_id)

    def user(self, ref: str) -> UserRow:
        """A user by id or email (an owner sees only their team's members)."""
        u = s.users
        key = ref.strip().lower()
        with self._read() as c:
            row = c.execute(sa.select(u).where(sa.or_(u.c.id == ref, u.c.email == key))).first()
            if row is not None and self.actor is not None:
                member = c.execute(sa.select(s.memberships.c.role).where(
                    s.memberships.c.user_id == row.id, s.memberships.c.team_id == self.actor.team_id)).first()
                row = row if member else None
        if row is None:
            raise LedgerError(f"no user '{ref}'", hint="'portrait team members' lists them")
        return self._user_row(row)

    def set_password(self, user_ref: str, password: str) -> None:
        user = self.user(user_ref)
        if self.actor is not None and self.actor.user_id != user.id:
            self._admin()
        with self._write() as c:
            c.execute(s.users.update().where(s.users.c.id == user.id).values(password_hash=hash_password(password)))
            c.execute(s.sessions.delete().where(s.sessions.c.user_id == user.id))  # sign out everywhere

    def add_member(self, team_ref: str, user_ref: str, role: str) -> MemberRow:
        """Give `user` `role` in the team (changing it when they are a member already)."""
        if role not in ROLES:
            raise UsageError(f"'{role}' is not a role", field="role", hint=f"choose one of: {', '.join(ROLES)}")
        team = self.team(team_ref)
        self._admin(team.id)
        u = s.users
        with self._read() as c:
            row = c.execute(sa.select(u).where(sa.or_(u.c.id == user_ref, u.c.email == user_ref.strip().lower()))).first()
        if row is None:
            raise LedgerError(f"no user '{user_ref}'", hint="create the account first ('portrait team add' does both)")
        m = s.memberships
        with self._write() as c:
            existing = c.execute(sa.select(m.c.role).where(m.c.user_id == row.id, m.c.team_id == team.id)).first()
            if existing:
                if existing.role == "owner" and role != "owner":
                    self._keep_an_owner(c, team.id)
                c.execute(m.update().where(m.c.user_id == row.id, m.c.team_id == team.id).values(role=role))
            else:
                c.execute(m.insert().values(user_id=row.id, team_id=team.id, role=role, created_at=time.time(),
                                            created_by=self.user_id))
        return MemberRow(user_id=row.id, email=row.email, name=row.name, team_id=team.id, role=role)

    def add_person(self, team_ref: str, email: str, role: str, *, password: str | None = None,
                   name: str | None = None) -> tuple[MemberRow, bool]:
        """Add `email` to the team with `role`, making their account first when they have none;
        returns (membership, whether the account was made)."""
        team = self.team(team_ref)
        self._admin(team.id)
        key = normalise_email(email)
        with self._read() as c:
            exists = c.execute(sa.select(s.users.c.id).where(s.users.c.email == key)).first() is not None
        if not exists:
            if role not in ROLES:
                raise UsageError(f"'{role}' is not a role", field="role", hint=f"choose one of: {', '.join(ROLES)}")
            self.as_actor(None).create_user(key, password=password, name=name)
        return self.add_member(team.id, key, role), not exists

    @staticmethod
    def _keep_an_owner(c: sa.Connection, team_id: str) -> None:
        m = s.memberships
        owners = c.execute(sa.select(sa.func.count()).where(m.c.team_id == team_id, m.c.role == "owner")).scalar()
        if (owners or 0) <= 1:
            raise UsageError("a team needs at least one owner", field="role", hint="make someone else an owner first")

    def remove_member(self, team_ref: str, user_ref: str) -> None:
        team = self.team(team_ref)
        self._admin(team.id)
        user = self.user(user_ref)
        m = s.memberships
        with self._write() as c:
            role = c.execute(sa.select(m.c.role).where(m.c.user_id == user.id, m.c.team_id == team.id)).scalar()
            if role == "owner":
                self._keep_an_owner(c, team.id)
            c.execute(m.delete().where(m.c.user_id == user.id, m.c.team_id == team.id))
            c.execute(s.sessions.delete().where(s.sessions.c.user_id == user.id, s.sessions.c.team_id == team.id))
            c.execute(s.api_tokens.update().where(s.api_tokens.c.user_id == user.id, s.api_tokens.c.team_id == team.id,
                                                  s.api_tokens.c.revoked_at.is_(None)).values(revoked_at=time.time()))

    def members(self, team_ref: str) -> list[MemberRow]:
        team = self.team(team_ref)
        m, u = s.memberships, s.users
        with self._read() as c:
            rows = c.execute(sa.select(m.c.user_id, u.c.email, u.c.name, m.c.role).select_from(m.join(u, u.c.id == m.c.user_id))
                             .where(m.c.team_id == team.id).order_by(u.c.email)).all()
        return [MemberRow(user_id=r.user_id, email=r.email, name=r.name, team_id=team.id, role=r.role) for r in rows]

    def actor_for(self, user_ref: str, team_ref: str | None = None) -> Actor:
        """The user acting for a team they belong to (their first team when none is named)."""
        u, m, t = s.users, s.memberships, s.teams
        with self._read() as c:
            query = (sa.select(u.c.id, u.c.email, u.c.name, u.c.disabled_at, t.c.id.label("team_id"),
                               t.c.name.label("team_name"), m.c.role)
                     .select_from(u.join(m, m.c.user_id == u.c.id).join(t, t.c.id == m.c.team_id))
                     .where(sa.or_(u.c.id == user_ref, u.c.email == user_ref.strip().lower())))
            if team_ref:
                query = query.where(sa.or_(t.c.id == team_ref, t.c.name == team_ref))
            row = c.execute(query.order_by(m.c.created_at)).first()
        if row is None:
            raise LoginRequired(f"'{user_ref}' is not a member of {('team ' + team_ref) if team_ref else 'any team'}",
                                hint="an owner adds members with 'portrait team add EMAIL --role ROLE'")
        if row.disabled_at is not None:
            raise LoginRequired(f"the account {row.email} is disabled", hint="ask an owner of the team")
        return Actor(user_id=row.id, email=row.email, name=row.name, team_id=row.team_id, team_name=row.team_name,
                     role=row.role)

    def adopt_unowned(self, team_ref: str) -> int:
        """Give the work made before accounts existed (no team) to `team`; returns the runs adopted."""
        team = self.team(team_ref)
        self._admin(team.id)
        with self._write() as c:
            adopted = c.execute(s.runs.update().where(s.runs.c.team_id.is_(None)).values(team_id=team.id)).rowcount
            for table in (s.requests, s.results, s.rights):
                c.execute(table.update().where(table.c.team_id.is_(None)).values(team_id=team.id))
            c.execute(s.jobs.update().where(s.jobs.c.team_id.is_(None)).values(team_id=team.id))
        return int(adopted or 0)

    # --- logging in ---------------------------------------------------------------------------
    def _failures(self, c: sa.Connection, subject: str, since: float) -> list[float]:
        f = s.login_failures
        return [r[0] for r in c.execute(sa.select(f.c.at).where(f.c.subject == subject, f.c.at >= since)
                                        .order_by(f.c.at)).all()]

    def login(self, email: str, password: str, *, client: str = "", team: str | None = None) -> tuple[Actor, str, str]:
        """Check the password; returns (actor, session secret for the cookie, CSRF token).

        Throttled: after `throttle.per_account` failures for one account, or `per_client` from one
        address, within `window_s`, every attempt (right or wrong) is refused with the seconds to
        wait — counted in the database, so every server process behind it agrees.
        """
        now = time.time()
        key = (email or "").strip().lower()
        throttle = self.throttle
        since = now - throttle.window_s
        subjects = [(f"user:{key}", throttle.per_account), (f"ip:{client}", throttle.per_client)]
        with self._read() as c:
            for subject, allowed in subjects:
                seen = self._failures(c, subject, since)
                if len(seen) >= allowed:
                    wait = max(1.0, seen[-allowed] + throttle.window_s - now)
                    raise TooManyAttempts(f"too many failed sign-ins; try again in {wait:.0f} s", retry_after=wait,
                                          hint="wait, or ask an owner to reset the password ('portrait team password')")
            row = c.execute(sa.select(s.users).where(s.users.c.email == key)).first()
        ok = verify_password(row.password_hash if row else None, password)
        if not ok or row is None or row.disabled_at is not None:
            with self._write() as c:
                c.execute(s.login_failures.insert(), [{"subject": subj, "at": now} for subj, _ in subjects])
            raise LoginRequired("wrong email or password", hint="check both; after 5 failures sign-in pauses for 15 minutes")
        actor = self.actor_for(row.id, team)
        secret, csrf = new_secret(), new_secret()
        with self._write() as c:
            f = s.login_failures
            c.execute(f.delete().where(f.c.subject == f"user:{key}"))
            c.execute(f.delete().where(f.c.at < since))
            if password_needs_rehash(row.password_hash):
                c.execute(s.users.update().where(s.users.c.id == row.id).values(password_hash=hash_password(password)))
            c.execute(s.sessions.insert().values(id=hash_secret(secret), user_id=actor.user_id, team_id=actor.team_id,
                                                 csrf=csrf, created_at=now, expires_at=now + SESSION_TTL_S,
                                                 client=client[:200]))
        return actor, secret, csrf

    def session(self, secret: str) -> tuple[Actor, str] | None:
        """(actor, CSRF token) of a live session, or None (unknown, expired, or membership removed)."""
        if not secret:
            return None
        with self._read() as c:
            row = c.execute(sa.select(s.sessions).where(s.sessions.c.id == hash_secret(secret))).first()
        if row is None or row.expires_at < time.time():
            return None
        try:
            return self.actor_for(row.user_id, row.team_id), row.csrf
        except LoginRequired:
            return None

    def end_session(self, secret: str) -> None:
        with self._write() as c:
            c.execute(s.sessions.delete().where(s.sessions.c.id == hash_secret(secret)))

    # --- API tokens ---------------------------------------------------------------------------
    def create_token(self, user_ref: str, team_ref: str | None = None, *, name: str = "cli") -> str:
        """A new API token for scripts and the CLI, acting as the user in the team. Shown once."""
        actor = self.actor_for(user_ref, team_ref)
        if self.actor is not None and self.actor.user_id != actor.user_id:
            self._admin(actor.team_id)
        secret = new_secret(TOKEN_PREFIX)
        with self._write() as c:
            c.execute(s.api_tokens.insert().values(id=new_id("tok_"), token_hash=hash_secret(secret), user_id=actor.user_id,
                                                   team_id=actor.team_id, name=name, created_at=time.time()))
        return secret

    def authenticate_token(self, secret: str) -> Actor:
        tk = s.api_tokens
        with self._read() as c:
            row = c.execute(sa.select(tk).where(tk.c.token_hash == hash_secret(secret or ""))).first()
        if row is None or row.revoked_at is not None:
            raise LoginRequired("the API token is unknown or revoked",
                                hint="create one with 'portrait team token create' and put it in config.toml (token = ...)")
        actor = self.actor_for(row.user_id, row.team_id)
        if not self.read_only:
            with self._write() as c:
                c.execute(tk.update().where(tk.c.id == row.id).values(last_used_at=time.time()))
        return actor

    def tokens(self, user_ref: str | None = None) -> list[TokenRow]:
        tk = s.api_tokens
        where: list[Any] = []
        if user_ref:
            where.append(tk.c.user_id == self.user(user_ref).id)
        if self.actor is not None:
            where.append(tk.c.team_id == self.actor.team_id)
            if not self.actor.may("admin"):
                where.append(tk.c.user_id == self.actor.user_id)
        with self._read() as c:
            rows = c.execute(sa.select(tk).where(*where).order_by(tk.c.created_at)).all()
        return [TokenRow(id=r.id, user_id=r.user_id, team_id=r.team_id, name=r.name, created_at=r.created_at,
                         last_used_at=r.last_used_at, revoked=r.revoked_at is not None) for r in rows]

    def revoke_token(self, token_id: str) -> None:
        tk = s.api_tokens
        found = [t for t in self.tokens() if t.id == token_id]
        if not found:
            raise LedgerError(f"no token '{token_id}'", hint="'portrait team token list' shows them")
        with self._write() as c:
            c.execute(tk.update().where(tk.c.id == token_id).values(revoked_at=time.time()))

    # --- budgets ------------------------------------------------------------------------------
    def set_budget(self, team_ref: str, limit_usd: float, *, period: str = "month", user: str | None = None,
                   project: str | None = None) -> BudgetRow:
        """Set (or change) the limit for one scope: the team or one member, per day/month/total, one
        project or all. `Ledger.reserve` enforces every budget that applies, atomically."""
        if period not in ("day", "month", "total"):
            raise UsageError(f"'{period}' is not a budget period", field="period", hint="use day, month or total")
        if not limit_usd >= 0:
            raise UsageError(f"{limit_usd} is not a budget", field="limit", hint="give dollars, e.g. 25")
        team = self.team(team_ref)
        self._admin(team.id)
        user_id = self.user(user).id if user else None
        b = s.budgets
        scope = [b.c.team_id == team.id, b.c.period == period,
                 b.c.user_id == user_id if user_id else b.c.user_id.is_(None),
                 b.c.project == project if project else b.c.project.is_(None)]
        with self._write() as c:
            existing = c.execute(sa.select(b.c.id).where(*scope).with_for_update()).scalar()
            if existing:
                c.execute(b.update().where(b.c.id == existing).values(limit_usd=float(limit_usd)))
                budget_id = existing
            else:
                budget_id = new_id("budget_")
                c.execute(b.insert().values(id=budget_id, team_id=team.id, user_id=user_id, period=period,
                                            project=project, limit_usd=float(limit_usd), created_at=time.time(),
                                            created_by=self.user_id))
        return next(x for x in self.budgets(team.id) if x.id == budget_id)

    def remove_budget(self, budget_id: str) -> None:
        b = s.budgets
        with self._read() as c:
            team_id = c.execute(sa.select(b.c.team_id).where(b.c.id == budget_id)).scalar()
        if team_id is None:
            raise LedgerError(f"no budget '{budget_id}'", hint="'portrait team budget list' shows them")
        self._admin(team_id)
        with self._write() as c:
            c.execute(b.delete().where(b.c.id == budget_id))

    def budgets(self, team_ref: str) -> list[BudgetRow]:
        """The team's budgets with what is spent (or in flight) in each one's current period."""
        team = self.team(team_ref)
        b = s.budgets
        now = time.time()
        out = []
        with self._read() as c:
            for r in c.execute(sa.select(b).where(b.c.team_id == team.id).order_by(b.c.created_at)).all():
                spent = self._budget_spent(c, r, sandbox=False, now=now)
                sandbox = self._budget_spent(c, r, sandbox=True, now=now)
                out.append(BudgetRow(id=r.id, team_id=r.team_id, user_id=r.user_id, period=r.period, project=r.project,
                                     limit_usd=r.limit_usd, spent_usd=round(spent, 6), sandbox_usd=round(sandbox, 6)))
        return out
