"""Backends: one package per inference engine, found through one lazy registry.

``harness.backends.registry`` lists them (built-in packages and plug-ins from the
``harness.backends`` entry-point group); ``spec`` is what the host knows about a backend
(options, capabilities, image recipe); ``engine`` is the in-image contract. Importing this
package imports no engine. docs/backends.md walks through adding one.
"""
