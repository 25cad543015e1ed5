"""One small adapter per library. Each imports its library inside functions, so importing skfeaturize
stays cheap; featurizers talk to these adapters, never to the libraries directly."""
