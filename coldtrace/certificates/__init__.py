"""A delivery's temperature certificate: what it says (``content``, pure), the judging of
the delivery's stored readings behind it (``judge``) and its issue (``issue``).

Above deliveries and alerts in the layers: deliveries' automation issues certificates
through the ``Issuer`` its entry point passes in.
"""
