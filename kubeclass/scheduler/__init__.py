"""kubeclass scheduler: upstream's scheduling framework (PreFilter, Filter, PostFilter, PreScore, Score,
Reserve, Permit, Bind), queue and node cache, as an API client like kube-scheduler."""
