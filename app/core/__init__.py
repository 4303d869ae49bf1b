"""Pure, typed domain logic. No Qt, no GPU access; only the GGUF/config readers touch the disk."""
