"""Layer 1: objects, trees, refs, packages, workspaces, working copy, index.db, gc, fsck."""
