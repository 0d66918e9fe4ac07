"""Zero-shot evaluation: prompts, classifiers, image embeddings, metrics and retrieval. Never
imports training."""
