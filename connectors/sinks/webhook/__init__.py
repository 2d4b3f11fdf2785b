"""``durable sink webhook``: each decision POSTed as signed JSON (:mod:`.signing`, :mod:`.app`)."""
