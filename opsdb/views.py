from django.db import connection
from django.http import JsonResponse


def health(request):
    """Liveness and database check for load balancers; open to anonymous callers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # the point of a health check is to report, not raise
        return JsonResponse({"status": "error", "database": str(exc)}, status=503)
    return JsonResponse({"status": "ok", "database": connection.vendor})
