"""Views of a batch's field embeddings for models that select, scale or stop their fields.

PEPNet's towers read every field scaled by a per-row, per-field gate, and its gates read some
fields and the scaled ones with no gradient to the embeddings. Each is a product with the field
embeddings side by side, so it splits by field as ``FlatFields.linear`` does: a scaled field's
projected ids are gathered with the row's scale as their bag weight
(``s e_f W_f = s (e_f W_f)``). ``FieldView`` is such an input, ``FieldConcat`` several side by
side; both compute ``tensor()`` (the straightforward columns) when the product does not split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtreclib.nn.products import DeferredFields, FieldTerm, FlatFields, input_linear


class FieldView(DeferredFields):
    """Fields ``fields`` of ``flat`` (all, in order, when None), each times its column of ``scale``
    (B, E) when given; ``detached``: no gradient flows back through these columns (to the
    embeddings or the scale). (B, sum of their widths)."""

    def __init__(self, flat: FlatFields, fields: Sequence[int] | None = None, scale: torch.Tensor | None = None, detached: bool = False):
        self.flat = flat
        widths = flat.embedding.widths
        self.fields = list(range(len(widths))) if fields is None else list(fields)
        self.all_fields = fields is None
        self.scale = scale
        self.detached = detached
        self._tensor: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.flat.batch_size

    @property
    def width(self) -> int:
        widths = self.flat.embedding.widths
        return sum(widths[f] for f in self.fields)

    def terms(self) -> list[FieldTerm]:
        """One term per field; a detached view's columns carry no gradient at all, to the scale neither."""
        scale = self.scale.detach() if self.detached and self.scale is not None else self.scale
        return [FieldTerm(f, None if scale is None else scale[:, f], self.detached) for f in self.fields]

    def tensor(self) -> torch.Tensor:
        """(B, sum of widths) the selected columns of ``flat.tensor()``, scaled, detached (computed once)."""
        if self._tensor is None:
            x = self.flat.tensor()
            widths = self.flat.embedding.widths
            if not self.all_fields:
                starts = [sum(widths[:e]) for e in range(len(widths))]
                columns = torch.tensor([starts[f] + i for f in self.fields for i in range(widths[f])], device=x.device)
                x = x.index_select(1, columns)
            if self.scale is not None:
                column_fields = torch.tensor([f for f in self.fields for _ in range(widths[f])], device=x.device)  # each column's field
                x = x * self.scale.index_select(1, column_fields)
            self._tensor = x.detach() if self.detached else x
        return self._tensor

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return FieldConcat([self]).linear(weight, bias)


class FieldConcat(DeferredFields):
    """Views of one batch side by side: (B, sum of their widths)."""

    def __init__(self, views: Sequence[FieldView]):
        self.views = list(views)

    @property
    def batch_size(self) -> int:
        return self.views[0].batch_size

    def tensor(self) -> torch.Tensor:
        parts = [view.tensor() for view in self.views]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``tensor() @ weight + bias``: (I, H) weight -> (B, H), field by field where ``FlatFields`` would split."""
        flat = self.views[0].flat
        if not flat.splits(weight):
            return input_linear(self.tensor(), weight, bias)
        return flat.linear_terms([term for view in self.views for term in view.terms()], weight, bias)
