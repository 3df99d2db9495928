"""Author-year labels for the bibliography page, matching the in-text citations.

sphinxcontrib-bibtex cites in the text as "Zhao et al. [2025]" (``bibtex_reference_style:
author_year``) but labels the list with the pybtex style's alphabetic keys ("[ZUB+25]").
This extension registers a pybtex style ``authoryear`` whose labels are "Zhao et al., 2025"
and whose list is sorted by author, then year; ``_config.yml`` selects it with
``bibtex_default_style: authoryear``.
"""

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle


def _last(person) -> str:
    return " ".join(person.rich_last_names and [str(n) for n in person.rich_last_names]
                    or person.last_names)


class AuthorYearLabels(BaseLabelStyle):
    """"Last, 2020", "Last and Other, 2020", "Last et al., 2020" (editors if no authors);
    equal labels get "2020a", "2020b" in list order."""

    def format_labels(self, sorted_entries):
        labels = list(self._labels(sorted_entries))
        seen: dict[str, int] = {}
        for label in labels:
            if labels.count(label) == 1:
                yield label
            else:
                seen[label] = seen.get(label, 0) + 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]

    def _labels(self, sorted_entries):
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [_last(p) for p in people]
            if not names:
                who = entry.fields.get("organization") or entry.fields.get("title", "Anon.")
            elif len(names) == 1:
                who = names[0]
            elif len(names) == 2:
                who = f"{names[0]} and {names[1]}"
            else:
                who = f"{names[0]} et al."
            yield f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    """pybtex's unsrt formatting with author-year labels, sorted by author and year."""

    default_label_style = AuthorYearLabels
    default_sorting_style = SortingStyle


def setup(app):
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
