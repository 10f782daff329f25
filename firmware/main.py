# Runs at power-on after boot.py: the coldtrace sensor box (see README.md).
import app

app.main()
