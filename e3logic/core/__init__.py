"""Layer 0: hashing, canonical encoding, errors, semver, paths. No project imports."""
