"""Backend settings from environment variables (prefix `NEURON_ATLAS_`) and an optional `.env` file.

Every setting has a default that works for the offline demo; `neuron-atlas serve` flags override them.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing import Annotated, Literal


class Settings(BaseSettings):
    """Where the data lives, which model to load, and the limits every request is held to."""

    model_config = SettingsConfigDict(env_prefix="NEURON_ATLAS_", env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore", validate_default=True)

    store: Path = Field(Path("data/atlas.duckdb"), description="analysis store (atlas.duckdb), opened read-only")
    findings_db: Path = Field(Path("data/findings.sqlite"), description="findings database (the only file the backend writes)")
    model: str = Field("demo", description="model to load: demo | tiny-random | full-random | local folder | hub id | none")
    model_fallback: str | None = Field("tiny-random", description="built-in model used when `demo` is missing (reported in /capabilities); empty = no fallback")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    max_upload_bytes: int = Field(20_000_000, ge=1, description="largest accepted audio upload")
    max_audio_seconds: float = Field(60.0, gt=0, description="longest accepted audio input")
    audio_store_bytes: int = Field(256_000_000, ge=1, description="bytes of decoded uploads (16 kHz float32 samples, "
                                   "64 kB per second) kept for POST /audio; least recently used out first")
    audio_store_ttl_s: float = Field(3600.0, gt=0, description="seconds an upload stays usable by its audio_id after "
                                     "it was last uploaded")
    max_text_chars: int = Field(2000, ge=1, description="longest accepted text input")
    max_json_bytes: int = Field(1_000_000, ge=1024, description="largest accepted JSON request body")
    max_new_tokens: int = Field(128, ge=1, le=1024, description="default and largest number of generated tokens")
    queue_size: int = Field(8, ge=1, description="intervention requests waiting or running at once")
    request_timeout_s: float = Field(120.0, gt=0, description="how long a synchronous intervention request may wait")
    cache_entries: int = Field(256, ge=0, description="intervention results kept in the cache")
    cache_bytes: int = Field(256_000_000, ge=0, description="bytes of intervention results kept in the cache")
    rate_burst: float = Field(10.0, ge=1, description="intervention requests a client may send in a burst")
    rate_per_s: float = Field(0.5, gt=0, description="sustained intervention requests per second per client")
    export_burst: float = Field(3.0, ge=1, description="bulk exports (/export/{table}) a client may start in a burst")
    export_per_s: float = Field(1 / 60, gt=0, description="sustained bulk exports per second per client")
    api_token: SecretStr | None = Field(None, description="when set, writes (saving findings) and bulk exports need "
                                                          "`Authorization: Bearer <token>`; empty = no token")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="peers (IPs or CIDR networks, comma-separated) whose X-Forwarded-For names the real client for rate "
                    "limits: the dashboard's app server, a reverse proxy")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="origins allowed by CORS (comma-separated in the environment)")
    language_identifier: str = Field("langid", description="langid | fasttext:/path/to/lid.176.bin")
    language_scope: Literal["all", "candidates"] = Field(
        "all", description="all: the identifier's posterior over every language it knows, read at the model's languages; "
                           "candidates: renormalised over the model's languages")
    warm_store: bool = Field(True, description="read the per-unit tables once at start-up so unit pages are fast from the first request")
    page_limit: int = Field(500, ge=1, description="largest page size of list endpoints")

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {item!r} is not an IP address or CIDR network") from None
        return value

    def is_trusted_proxy(self, host: str | None) -> bool:
        """Whether the direct peer `host` may tell us the client's address in X-Forwarded-For."""
        try:
            addr = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(n, strict=False) for n in self.trusted_proxies)

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value):
        """An empty token (e.g. compose's `${ATLAS_API_TOKEN:-}`) means no token, not a token nobody can send."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if value is None or not str(value).strip() else value

    @field_validator("model_fallback", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == "" else value

    def limits(self) -> dict:
        """The limits reported by /capabilities."""
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_audio_seconds": self.max_audio_seconds,
            "max_text_chars": self.max_text_chars,
            "audio_store_bytes": self.audio_store_bytes,
            "audio_store_ttl_s": self.audio_store_ttl_s,
            "max_json_bytes": self.max_json_bytes,
            "max_new_tokens": self.max_new_tokens,
            "queue_size": self.queue_size,
            "request_timeout_s": self.request_timeout_s,
            "rate_burst": self.rate_burst,
            "rate_per_s": self.rate_per_s,
            "page_limit": self.page_limit,
        }
