"""Case-folded text for search and the title sort, the same on every database.

SQLite's LIKE and lower() fold only ASCII, PostgreSQL's depend on its locale: the service folds
with Python's `str.casefold` (full Unicode case folding: "Über" -> "über", "Straße" ->
"strasse") when it writes a task and when it reads a query, and the databases only compare.
"""

from __future__ import annotations

# Between title and description in the search text: no search word (split on white space)
# can contain it, so no word matches across the two.
_SEPARATOR = "\n"


def title_key(title: str) -> str:
    return title.casefold()


def search_text(title: str, description: str | None) -> str:
    return _SEPARATOR.join(part.casefold() for part in (title, description) if part)


def search_words(query: str) -> list[str]:
    """The query's distinct words, folded; each must occur in a matching task."""
    return list(dict.fromkeys(query.casefold().split()))
