"""ccq's LiteLLM proxy code: Claude Code 2.x through LiteLLM 1.74.0.post2 to Cerebras.

Loaded by custom_callbacks.py, the file the proxy's config.yaml names
(``litellm_settings.callbacks: custom_callbacks.proxy_handler_instance`` and
``general_settings.custom_auth: custom_callbacks.ccq_master_key_auth``).  The
role deploys this directory beside it.  Written for and tested against LiteLLM
1.74.0.post2 (with openai 1.99.x).

Before LiteLLM is imported, ``startup`` (run by before_litellm/sitecustomize.py, which
the proxy's environment puts on PYTHONPATH) keeps LiteLLM from building the routes ccq
does not serve.

The data path of a /v1/messages request, module by module:

``hook``             What the proxy calls: the pre-call hook, the key check and the
                     count_tokens route; ``install`` applies the patches.
``normalizer``       The request side, items a-l: Claude Code's request made
                     acceptable to Cerebras (plain Python), before LiteLLM's
                     Anthropic adapter translates it.
``litellm_patches``  The response side, items k-t: version-guarded patches of
                     LiteLLM 1.74.0.post2 internals, around LiteLLM's relay.
``stream_fastpath``  The stream fast path (item l), beside LiteLLM's own stream path.
``anthropic_wire``   What Claude Code receives, written the same way on both relay
                     paths.
``quota``            Cerebras' quota figures, and the wait before a request (item r).
``guard``            The version guard, source fingerprints and patch marker that
                     the patches and the fast path share.

Environment knobs: ``CCQ_MAX_TOKENS_CEILING`` (see normalizer.py);
``CCQ_LITELLM_PATCHES``, ``CCQ_STREAM_FASTPATH``, ``CCQ_QUOTA_MAX_WAIT`` and
``CCQ_QUOTA_STATE`` (see litellm_patches.py); ``CCQ_ONLY_SERVED_ROUTES`` (startup.py).
"""
