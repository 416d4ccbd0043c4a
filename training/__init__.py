"""Private model training (DP-SGD, PATE, classic private models). Arrives with issue 4."""
