"""Provider simulator (``dispatch sim``): speaks the providers' real protocols on 127.0.0.1.

It imports nothing of the service, so it stays an honest stand-in: the service
must talk to it exactly as it would talk to Meta, Google and Apple.
"""
