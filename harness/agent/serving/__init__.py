"""Serving mode: an engine's OpenAI-compatible server measured under load (docs/serving.md).

``protocol`` runs the steps; ``server`` starts and stops the server, ``client`` speaks HTTP and
server-sent events, ``requests`` plans the requests, ``loadgen`` sends them, ``steady`` finds
the steady window and counts inside it, ``figures`` turns the records into results, ``prompts``
reads the model's tokenizer and the requests file.
"""
