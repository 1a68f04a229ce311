// Placeholder entry point so the package builds on this branch; the CLI lands elsewhere.
print("squat: not implemented yet")
