// Placeholder so the package builds on this branch.
