"""MLflow "model from code" entry for routerzoo routers.

MLflow stores this file with the model and executes it on load (instead of unpickling an object):
it declares the pyfunc, whose ``load_context`` calls the same :func:`routerzoo.routers.load_router`
as everything else, on the router artifact directory logged beside it.
"""

from mlflow.models import set_model

from routerzoo.zoo.pyfunc import RouterPyfunc

set_model(RouterPyfunc())
