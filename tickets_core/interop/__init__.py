"""Tickets in and out: export to a Hugging Face model folder, import the reference code's masks, migrate old run
folders."""
