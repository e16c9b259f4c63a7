"""A model as the user names it: ``endpoint/model`` (DESIGN §2)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelRef:
    """An endpoint and a model id; written ``endpoint/model``, split on the first '/' because
    OpenRouter, Together and vLLM model ids contain '/' themselves."""

    endpoint: str
    model: str

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        """The reference ``ref`` names; ValueError when it is not ``ENDPOINT/MODEL``."""
        endpoint, sep, model = ref.partition("/")
        if not sep or not endpoint or not model:
            raise ValueError(f"expected ENDPOINT/MODEL (e.g. openai/gpt-4o-mini), got {ref!r}")
        return cls(endpoint, model)

    @classmethod
    def loose(cls, ref: str) -> ModelRef:
        """What ``ref`` names, without judging it: all of it is the endpoint when it has no '/'.

        For text that may be half typed or stored by an older version (a lookup then fails
        where it would anyway).
        """
        endpoint, _, model = ref.partition("/")
        return cls(endpoint, model)

    def __str__(self) -> str:
        return f"{self.endpoint}/{self.model}"


def endpoint_of(ref: str) -> str:
    """The endpoint part of ``endpoint/model`` (all of ``ref`` when it has no '/')."""
    return ModelRef.loose(ref).endpoint
