"""facerec in the browser: ``streamlit run app.py``.

Every page lives in the facerec.app package (one module per page, a shared common module);
this file only starts it, as Streamlit runs it again on every interaction.
"""

from facerec.app import main

main()
