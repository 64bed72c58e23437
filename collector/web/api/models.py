"""What the resource modules' models share: the strict input base (unknown fields refused, so
oversized or stray input fails before any work is done), the field limits, and the plain answers
(``Done``, ``Created``). Each resource's own models live in its module."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

Email = Field(min_length=3, max_length=254)
Password = Field(min_length=1, max_length=256)
Secret = Field(min_length=10, max_length=200)
Name = Field(min_length=1, max_length=200)


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- authentication ------------------------------------------------------------------------------


class Done(BaseModel):
    ok: bool
    message: str


# --- me, tokens ----------------------------------------------------------------------------------


# --- tree, levels, tags --------------------------------------------------------------------------


class Created(BaseModel):
    id: int


# --- groups, grants, invitations -----------------------------------------------------------------


# --- contracts, КЭП, audit -----------------------------------------------------------------------


