"""Request parameters the API's routers share, each bounded as the database takes it: a bad
value is a 422 that says what is allowed, never a database error."""

from typing import Annotated, Literal

from fastapi import Path as PathParam
from fastapi import Query

# ids are 32-bit integer columns on PostgreSQL
Id = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="a positive id")]
# a tenant's or site's name as the specs allow it (no NUL: PostgreSQL refuses it in text)
NameQuery = Annotated[str | None, Query(max_length=100,
                                        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
State = Literal["pending", "held", "admitted", "running", "preempted", "succeeded", "failed",
                "cancelled", "rejected"]
