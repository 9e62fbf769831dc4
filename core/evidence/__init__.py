"""The audit evidence pack of a period (SPEC §12): a deterministic zip and its verifier."""

from core.evidence.pack import build_pack, pack_months, write_pack
from core.evidence.verify import VerifyResult, verify_pack

__all__ = ["VerifyResult", "build_pack", "pack_months", "verify_pack", "write_pack"]
