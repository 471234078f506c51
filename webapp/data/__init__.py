"""The console's data access: every MongoDB read and write and its one Kafka client.

- ``store``: :class:`AlertStore`, alerts, minute stats and the disposition audit trail;
  ``documents``: the typed, read-only views of those documents that views and templates use.
- ``users``: :class:`AccessStore`, users, API tokens and login throttling.
- ``label_outbox``: analysts' verdicts as fraud labels, written to an outbox and delivered
  by ``label_producer``, the console's Kafka producer.
- ``model_registry``: the trainer's ``models`` and ``model_health`` as the console reads them.
- ``read_cache``: the per-process cache in front of the expensive reads.

Nothing here imports Flask: the stores are built once per application by
:func:`webapp.services.init_app` and reach the views through :func:`webapp.services.services`.
"""
